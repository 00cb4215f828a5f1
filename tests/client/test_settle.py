"""Settling an uploaded file: deleted only if it is the very file read, by its own name, inside the allowed directories.

Against the real file system (directories swapped for symlinks by a thread while the delete
runs), the real S3 server (slowed by the fault proxy) and a real ``s3pod`` subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from faultproxy import FaultProxy
from servers import REGION

from s3po_client import Connection, enqueue
from s3po_client.errors import SourceChangedError
from s3po_client.localfile import FileStat, ensure_unchanged
from s3po_client.settle import delete_uploaded
from s3po_client.transfer.engine import UploadResult

#: Rounds of the parent-directory swap: the unguarded delete lost the outside file in about
#: one round of a thousand, so this many rounds fail it with near certainty.
SWAP_ROUNDS = 6000


def object_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def result_for(path: str, stat: FileStat) -> UploadResult:
    return UploadResult(
        bucket="b", key="k", bytes_read=stat.size, bytes_sent=stat.size, etag="e", source=stat, source_path=path
    )


class ParentSwapper:
    """A thread that swaps ``allowed/d`` between a real directory and a symlink to ``outside``, over and over."""

    def __init__(self, allowed: Path, outside: Path) -> None:
        self.d = allowed / "d"
        self.parked = allowed / "d.real"
        self.link = allowed / "d.link"
        self.d.mkdir()
        self.link.symlink_to(outside, target_is_directory=True)
        self.real_fd = os.open(self.d, os.O_RDONLY | os.O_DIRECTORY)  # the real directory, wherever it is renamed
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            os.rename(self.d, self.parked)
            os.rename(self.link, self.d)  # d is now a symlink out of the allowed directory
            os.rename(self.d, self.link)
            os.rename(self.parked, self.d)

    def __enter__(self) -> ParentSwapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.real_fd)


def test_a_parent_swapped_for_a_symlink_never_lets_a_file_outside_be_deleted(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    victim = outside / "file"
    victim.write_bytes(b"outside")
    deleted = 0
    with ParentSwapper(allowed, outside) as swapper:
        for _ in range(SWAP_ROUNDS):
            try:  # the file to settle, created in the real directory wherever it is now
                fd = os.open("file", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=swapper.real_fd)
                os.close(fd)
            except FileExistsError:
                pass
            stat = FileStat.from_stat(os.stat("file", dir_fd=swapper.real_fd))
            try:
                deleted += delete_uploaded(result_for(str(swapper.d / "file"), stat), allow_dirs=[str(allowed)])
            except SourceChangedError:
                pass
            assert victim.exists(), f"the file outside the allowed directory was deleted (after {deleted} deletes)"
    assert deleted > 0, "the file inside was deleted in the rounds where its directory was in place"


def test_a_rewrite_that_keeps_size_and_mtime_is_a_change(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 4096)
    before = os.stat(path)
    time.sleep(0.02)  # the ctime clock is coarse: let it tick
    with open(path, "r+b") as f:  # rsync --inplace -t, touch -r: same size, old mtime back
        f.write(b"b" * 4096)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(SourceChangedError, match="changed"):
        ensure_unchanged(str(path), FileStat.from_stat(before))


@pytest.fixture
def slow_conn(s3_server) -> Iterator[tuple[Connection, FaultProxy]]:
    """A synchronous Connection whose PUTs pass through a fault proxy (to slow them)."""
    with FaultProxy(s3_server.port) as proxy:
        conn = Connection(
            s3_server.access_key,
            s3_server.secret_key,
            endpoint_url=proxy.url,
            region=REGION,
            backoff_base=0.01,
            async_=False,
        )
        yield conn, proxy
        conn.close()


def test_a_rewrite_in_place_with_mtime_restored_during_the_upload_is_sent_again(
    slow_conn, s3, bucket, tmp_path: Path
) -> None:
    conn, proxy = slow_conn
    path = tmp_path / "data.bin"
    path.write_bytes(b"old" * 10_000)
    mtime = os.stat(path)
    slow = proxy.add_rule("delay", method="PUT", delay_s=0.8, times=1)

    def rewrite() -> None:
        wait_until(lambda: slow.hits >= 1, message="the upload under way")
        time.sleep(0.05)
        with open(path, "r+b") as f:
            f.write(b"new" * 10_000)
        os.utime(path, ns=(mtime.st_atime_ns, mtime.st_mtime_ns))

    writer = threading.Thread(target=rewrite)
    writer.start()
    assert conn.upload_file(bucket, "data.bin", str(path), retries=2) is True
    writer.join()
    assert object_bytes(s3, bucket, "data.bin") == b"new" * 10_000, "the new content was deleted unsent"


def test_connection_never_deletes_a_file_reached_through_a_symlink(s3_server, s3, bucket, tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_bytes(b"through a link")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with Connection(
        s3_server.access_key, s3_server.secret_key, endpoint_url=s3_server.url, region=REGION, async_=False
    ) as conn:
        assert conn.upload_file(bucket, "linked", str(link), delete=True) is True
    assert object_bytes(s3, bucket, "linked") == b"through a link"
    assert link.is_symlink() and target.read_bytes() == b"through a link"


def test_s3pod_never_deletes_a_file_reached_through_a_symlink(
    start_daemon, redis_server, redis_client, s3, bucket, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    target = spool / "target.bin"
    target.write_bytes(b"t" * 1000)
    link = spool / "link.bin"
    link.symlink_to(target)
    daemon = start_daemon("--allow-dir", str(spool))
    job_id = enqueue(bucket, "linked.bin", str(link), delete=True, redis_url=redis_server.url)
    wait_until(
        lambda: redis_client.llen("s3po:queue") == 0 and not redis_client.keys("s3po:processing:*"),
        message="the job settled",
    )
    wait_until(
        lambda: f"job={job_id}" in daemon.log and "kept" in daemon.log, message="the daemon to say why it kept the file"
    )
    assert hashlib.md5(object_bytes(s3, bucket, "linked.bin")).hexdigest() == hashlib.md5(b"t" * 1000).hexdigest()
    assert link.is_symlink() and target.read_bytes() == b"t" * 1000
    assert redis_client.llen("s3po:dead") == 0, [json.loads(e) for e in redis_client.lrange("s3po:dead", 0, -1)]
