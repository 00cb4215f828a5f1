"""Settings validate themselves: a bad value is a ConfigError naming it."""

from __future__ import annotations

import pytest

from s3po_client.errors import ConfigError
from s3po_client.settings import MiB, S3Settings, TransferSettings


def test_transfer_defaults() -> None:
    settings = TransferSettings()
    assert settings.multipart_threshold_bytes == 16 * MiB
    assert settings.part_size_bytes == 8 * MiB
    assert settings.checksum == "auto"


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("part_size_bytes", 4 * MiB, "part_size_bytes"),
        ("part_size_bytes", 6 * 1024 * MiB, "part_size_bytes"),
        ("multipart_threshold_bytes", 0, "multipart_threshold_bytes"),
        ("max_concurrency", 0, "max_concurrency"),
        ("request_retries", -1, "request_retries"),
        ("checksum", "sha512", "checksum"),
        ("compress_level", 23, "compress_level"),
        ("read_timeout_s", 0, "timeout"),
    ],
)
def test_bad_transfer_settings_are_config_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransferSettings(**{field: value})  # type: ignore[arg-type]


def test_s3_settings_keep_secrets_out_of_repr() -> None:
    settings = S3Settings(access_id="AKIA", secret_key="very-secret")
    assert "very-secret" not in repr(settings)
    with pytest.raises(ConfigError, match="both"):
        S3Settings(access_id="AKIA")
    with pytest.raises(ConfigError, match="http"):
        S3Settings(endpoint_url="127.0.0.1:9000")
