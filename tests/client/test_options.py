"""The S3 and transfer options, defined once: ``s3po`` reads them from S3PO_*, ``s3pod`` from S3POD_* (real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3po_client.settings import MiB, TransferSettings

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("command, prefix", [(("s3po_client.cli", "upload"), "S3PO"), (("s3pod",), "S3POD")])
def test_both_commands_offer_the_same_s3_options_with_their_own_variables(
    command: tuple[str, ...], prefix: str, daemon_env: dict[str, str]
) -> None:
    shown = " ".join(run(*command, "--help", env={**daemon_env, "COLUMNS": "400"}).stdout.split())
    for name in ("ENDPOINT_URL", "REGION", "PROFILE", "ACCESS_ID", "SECRET_KEY", "BACKOFF_BASE"):
        assert f"{prefix}_{name}" in shown, name
    assert "default: 60.0" in shown, "the backoff default is the retry policy's"


def test_s3po_upload_takes_the_transfer_settings(
    daemon_env: dict[str, str], s3_server: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"p" * (12 * MiB))
    env = {
        **daemon_env,
        "S3PO_ENDPOINT_URL": s3_server.url,
        "S3PO_REGION": "us-east-1",
        "S3PO_ACCESS_ID": s3_server.access_key,
        "S3PO_SECRET_KEY": s3_server.secret_key,
        "S3PO_PART_SIZE": "5",
    }
    done = run(
        "s3po_client.cli",
        "upload",
        "--keep",
        "--multipart-threshold",
        "5",
        str(path),
        f"s3://{bucket}/big.bin",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"').endswith("-3"), "three parts of 5 MiB"


def test_a_bad_transfer_setting_is_a_usage_error(daemon_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    done = run("s3po_client.cli", "upload", "--part-size", "4", str(path), "s3://b/k", env=daemon_env)
    assert done.returncode == 2 and "--part-size" in done.stderr


def test_one_pool_rule_for_transfers_at_once() -> None:
    settings = TransferSettings(max_concurrency=4)
    assert settings.pooled_for(1) is settings, "the default pool already holds one transfer's parts"
    assert settings.pooled_for(16).max_pool_connections == 16 * (4 + 1)


def test_every_command_takes_the_bandwidth_limit(
    daemon_env: dict[str, str], s3_server: Any, s3: Any, bucket: str, redis_client: Any, tmp_path: Path
) -> None:
    """``s3po upload``, ``s3po download`` and ``s3pod``: 4 MiB at 2 MiB/s takes 2 s (unlimited, a tenth of it)."""
    import os
    import re
    import time

    from s3po_client import enqueue

    data = os.urandom(4 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    env = {
        **daemon_env,
        "S3PO_ENDPOINT_URL": s3_server.url,
        "S3PO_REGION": "us-east-1",
        "S3PO_ACCESS_ID": s3_server.access_key,
        "S3PO_SECRET_KEY": s3_server.secret_key,
    }
    started = time.monotonic()
    done = run("s3po_client.cli", "upload", "--keep", "--bwlimit", "2M:off", str(path), f"s3://{bucket}/up", env=env)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.9
    started = time.monotonic()
    down = tmp_path / "down.bin"
    done = run("s3po_client.cli", "download", f"s3://{bucket}/up", str(down), env={**env, "S3PO_BWLIMIT": "off:2M"})
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.9
    assert down.read_bytes() == data

    enqueue(bucket, "daemon", str(path), redis_url=daemon_env["S3POD_REDIS_URL"], delete=False)
    done = run("s3pod", "--burst", env={**daemon_env, "S3POD_BWLIMIT": "2M"})
    assert done.returncode == 0, done.stderr
    assert "bwlimit='2M'" in done.stderr
    duration = float(re.search(r"uploaded job=\S+ .* duration=([\d.]+)s", done.stderr).group(1))  # type: ignore[union-attr]
    assert 1.7 <= duration <= 3.0, duration  # 2 s, less the quarter second the bucket filled while the daemon waited
    assert s3.get_object(Bucket=bucket, Key="daemon")["Body"].read() == data
    bad = run("s3pod", "--burst", env={**daemon_env, "S3POD_BWLIMIT": "08:00,fast"})
    assert bad.returncode == 2 and "bad rate 'fast'" in bad.stderr
