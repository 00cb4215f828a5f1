"""Settings as values: where the S3 store is and how transfers behave."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach the S3 store. Without keys, boto3's standard credential chain applies."""

    access_id: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    #: extra keyword arguments for ``botocore.config.Config`` (e.g. ``connect_timeout``)
    boto_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.access_id is None) != (self.secret_key is None):
            raise ConfigError("give both the access id and the secret key, or neither")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint URL must start with http:// or https://, got {self.endpoint_url!r}")
