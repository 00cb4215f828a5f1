"""Scenario 5: the file is modified (its mtime put back or not), truncated, replaced, deleted or made unreadable while its upload runs.

The store is slowed so the upload is surely under way when the file is touched. A file that
changed is never deleted and never stored as a mix of versions: the attempt fails, and the
next one stores the file's new version (then deletes it). A rewrite in place that restores
the size and mtime (``rsync --inplace -t``) is such a change: the ctime tells it. A deleted
file is dead-lettered with a clear reason. Read permission taken away mid-upload: the
daemon reads through the descriptor it opened, so the bytes are the file's; the chmod
moves the ctime, so the file is sent once more before it is deleted.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from conftest import wait_until
from scenario import FULL, KEYS, LONG, Figures, MiB, Spec, Stream, orphaned_uploads, settled, write_file

from s3po_client import enqueue
from s3po_client.transfer import TransferEngine

pytestmark = LONG

MUTATIONS = ["modified", "modified-mtime-kept", "truncated", "replaced", "deleted", "unreadable"]
SIZES = {"multipart": 24 * MiB, "single PUT": 2 * MiB}
VARIANTS = [(m, s) for s in (SIZES if FULL else ["multipart"]) for m in MUTATIONS]


def mutate(spec: Spec, how: str, rng: random.Random) -> None:
    """Touch the file as ``how`` says; update ``spec`` to the version that should end up stored."""
    path = spec.path
    if how.startswith("modified"):  # same size, other bytes, in place
        before = os.stat(path)
        with open(path, "r+b") as f:
            f.seek(spec.size // 2)
            f.write(b"\0changed\0" * 100)
        if how == "modified-mtime-kept":  # as rsync --inplace -t and touch -r leave it
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        spec.md5 = __import__("hashlib").md5(path.read_bytes()).hexdigest()
    elif how == "truncated":
        os.truncate(path, spec.size // 3)
        spec.size //= 3
        spec.md5 = __import__("hashlib").md5(path.read_bytes()).hexdigest()
    elif how == "replaced":
        new = path.with_suffix(".new")
        spec.md5 = write_file(new, spec.size, rng)
        os.replace(new, path)
    elif how == "deleted":
        path.unlink()
    elif how == "unreadable":
        path.chmod(0)


@pytest.mark.parametrize("how,size", VARIANTS, ids=[f"{m}-{s.replace(' ', '')}" for m, s in VARIANTS])
def test_a_file_touched_during_its_upload(
    how, size, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(how + size)
    path = tmp_path / "file.bin"
    nbytes = SIZES[size]
    spec = Spec("file.bin", path, write_file(path, nbytes, rng), nbytes)
    query = "partNumber" if size == "multipart" else None
    slow = fault_proxy.add_rule("delay", method="PUT", query=query, delay_s=0.6, times=3)
    started = time.monotonic()
    stream = Stream(start_daemon, "--concurrency", "1", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    stream.start()
    enqueue(bucket, spec.key, path, redis_url=redis_server.url)
    wait_until(lambda: slow.hits >= 1, message="the upload under way")
    mutate(spec, how, rng)
    try:
        if how == "deleted":
            wait_until(
                lambda: settled(redis_client) and redis_client.llen(KEYS.dead) == 1,
                timeout_s=60,
                message="the job dead-lettered",
            )
        else:
            stream.wait_settled(redis_client, [spec], timeout_s=60)
    finally:
        if path.exists():
            path.chmod(0o644)
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures("5. File changed during upload", f"{how}, {size}")
        figures.measure(
            engine=engine,
            s3=s3,
            bucket=bucket,
            client=redis_client,
            specs=[spec],
            logs=stream.logs,
            expect_dead=[spec.key] if how == "deleted" else [],
        )
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    stream.sample()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    log = "\n".join(stream.logs)
    figures.extra.update(source_changed_retries=log.count("retry job="))
    figures.record()
    figures.assert_nothing_lost()
    assert orphaned_uploads(s3, bucket) == []
    if how == "deleted":
        [entry] = [json.loads(e) for e in redis_client.lrange(KEYS.dead, 0, -1)]
        assert "does not exist" in entry["error"]
        # A single PUT holds the whole body before it is sent: deleted during the PUT, the file's
        # last version may be stored (verified) — the job still ends dead, its file gone.
        assert figures.dead == 1 and figures.verified == (0 if size == "multipart" else figures.verified)
    else:
        assert figures.verified == 1 and figures.dead == 0, figures  # the object is the file's last version
        assert not path.exists()
        if how != "unreadable":
            assert "changed" in log or "vanished" in log, "the change was seen and the attempt failed"


def test_the_file_opened_by_the_caller_is_the_one_read(s3, bucket, s3_settings, tmp_path: Path) -> None:
    """The daemon opens and checks the job's file, then hands the descriptor to the engine: the
    engine must read that descriptor, not open the name again (it was closed and the name
    re-opened, so a file removed in between failed as missing, and a file swapped in between
    was read unchecked)."""
    from s3po_client.errors import SourceChangedError
    from s3po_client.localfile import open_checked

    path = tmp_path / "held.bin"
    path.write_bytes(b"h" * 5000)
    opened = open_checked(str(path))
    path.unlink()  # gone by name; the descriptor still reads it
    engine = TransferEngine(s3_settings)
    try:
        with pytest.raises(SourceChangedError, match="vanished while it was sent") as caught:
            engine.upload_file(bucket, "held.bin", path, opened=opened)
    finally:
        engine.close()
    assert caught.value.transient, "read from the descriptor, the change is seen at the end: retried, not dead"
    assert "held.bin" not in {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
