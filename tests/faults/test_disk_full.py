"""Scenario 6: the disk fills up while a download is written.

The test mounts a small tmpfs (8 MiB) and downloads a 20 MiB object into it, with the
library and with the ``s3po download`` command. The download must fail with a clear error
naming the cause, leave nothing at the target path (no partial file, no temporary file),
and leave the files already there untouched. Mounting needs root (CAP_SYS_ADMIN); where
it cannot be done the test says so and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scenario import LONG, Figures, MiB

from s3po_client.errors import DownloadError
from s3po_client.transfer import TransferEngine

pytestmark = LONG


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    # Only root mounts: a developer's own account goes through sudo (as the Makefile does for
    # its packages), the filesystem then owned by that account.
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    options = f"size=8m,uid={os.getuid()},gid={os.getgid()}"
    try:
        done = subprocess.run(
            [*as_root, "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True
        )
        why = done.stderr.strip() if done.returncode else ""
    except FileNotFoundError as exc:  # no sudo on this machine
        why = str(exc)
    if why:
        pytest.fail(f"a full disk needs a small tmpfs, mounted as root or through sudo -n: {why}")
    try:
        yield mount
    finally:
        subprocess.run([*as_root, "umount", "-l", str(mount)], check=False)


def test_a_download_into_a_full_disk_fails_cleanly(small_disk: Path, s3, bucket, s3_settings, s3_server) -> None:
    started = time.monotonic()
    data = os.urandom(20 * MiB)
    s3.put_object(Bucket=bucket, Key="big.bin", Body=data)
    keep = small_disk / "already-here.txt"
    keep.write_bytes(b"k" * 1000)
    target = small_disk / "big.bin"
    engine = TransferEngine(s3_settings)
    try:
        with pytest.raises(DownloadError) as caught:
            engine.download_file(bucket, "big.bin", target)
    finally:
        engine.close()
    message = str(caught.value)
    assert "No space left on device" in message, message
    assert sorted(p.name for p in small_disk.iterdir()) == ["already-here.txt"], "no partial or temporary file"
    assert keep.read_bytes() == b"k" * 1000

    env = {k: v for k, v in os.environ.items() if not k.startswith("S3PO")}
    env.update(
        S3PO_ENDPOINT_URL=s3_server.url,
        S3PO_REGION="us-east-1",
        S3PO_ACCESS_ID=s3_server.access_key,
        S3PO_SECRET_KEY=s3_server.secret_key,
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    cli = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "download", f"s3://{bucket}/big.bin", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert cli.returncode == 1, cli
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0], cli.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["already-here.txt"]
    Figures(
        "6. Disk full while downloading",
        "20 MiB object into an 8 MiB tmpfs: library and s3po download",
        jobs=2,
        dead=0,
        seconds=round(time.monotonic() - started, 1),
        extra={"error": message[:160], "cli_exit": cli.returncode, "left_behind": 0},
    ).record()
