"""A multipart upload survives SIGKILL: resumed part by part, or aborted — never left on the store.

s3pod records each multipart upload in ``<prefix>:upload:<job id>`` before its first part;
the next run of the job lists the parts the store holds, checks each against the file,
and sends only the others. These tests kill real s3pod processes in the middle of such
uploads and read the store afterwards (ListParts, ListMultipartUploads, the object's bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from scenario import KEYS, LONG, Figures, MiB, orphaned_uploads, settled, write_file

from s3po_client import enqueue
from s3po_client.admin import count_jobs
from s3po_client.keys import QueueKeys
from s3po_client.producer import shard_index
from s3po_client.redis_url import split_prefixes
from s3po_client.transfer import TransferEngine

pytestmark = LONG

PART = 8 * MiB  # the daemon's part size (TransferSettings' default)


def recorded(redis_client: Any, job_id: str, keys: QueueKeys = KEYS) -> dict[str, Any] | None:
    raw = redis_client.get(keys.upload(job_id))
    return None if raw is None else json.loads(raw)


def job_keys(prefix: str, bucket: str, key: str) -> QueueKeys:
    """The keys of the shard a producer puts a job for ``bucket``/``key`` on."""
    shards = split_prefixes(prefix)
    return QueueKeys(shards[shard_index(bucket, key, len(shards))])


def stored_parts(s3: Any, bucket: str, key: str, upload_id: str) -> dict[int, int]:
    response = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    return {p["PartNumber"]: p["Size"] for p in response.get("Parts", [])}


def kill_mid_upload(
    start_daemon: Any,
    fault_proxy: Any,
    redis_client: Any,
    s3: Any,
    bucket: str,
    key: str,
    job_id: str,
    parts_before_kill: int,
    prefix: str = KEYS.prefix,
) -> tuple[Any, dict[str, Any], dict[int, int]]:
    """Run s3pod on a slowed store until ``parts_before_kill`` parts are stored, SIGKILL it; return
    (the killed daemon, the upload record it left, the parts stored once the ones in flight landed)."""
    keys = job_keys(prefix, bucket, key)
    slow = fault_proxy.add_rule("delay", method="PUT", query="partNumber", delay_s=0.5, times=None)
    first = start_daemon(
        "--heartbeat-timeout",
        "1",
        "--concurrency",
        "1",
        "--prefix",
        prefix,
        env={"S3POD_ENDPOINT_URL": fault_proxy.url},
    )
    wait_until(
        lambda: recorded(redis_client, job_id, keys) and recorded(redis_client, job_id, keys)["upload_id"],
        message="the upload recorded",
    )
    upload_id = recorded(redis_client, job_id, keys)["upload_id"]
    wait_until(
        lambda: len(stored_parts(s3, bucket, key, upload_id)) >= parts_before_kill,
        timeout_s=60,
        message=f"{parts_before_kill} parts stored",
    )
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    time.sleep(slow.delay_s + 0.5)  # the parts the proxy was holding reach the store (or not)
    fault_proxy.clear()
    record = recorded(redis_client, job_id, keys)
    assert record is not None and record["upload_id"] == upload_id, "the killed run left its record"
    assert orphaned_uploads(s3, bucket) == [(key, upload_id)], "and its upload, for the next run"
    return first, record, stored_parts(s3, bucket, key, upload_id)


def test_a_killed_multipart_upload_is_resumed_and_only_the_missing_parts_are_sent_again(
    redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    md5 = write_file(path, 8 * PART, random.Random(1))  # 8 parts
    job_id = enqueue(bucket, "big.bin", path, redis_url=redis_server.url)
    first, record, stored = kill_mid_upload(
        start_daemon, fault_proxy, redis_client, s3, bucket, "big.bin", job_id, parts_before_kill=3
    )
    assert 3 <= len(stored) < 8 and all(size == PART for size in stored.values())
    assert path.exists()

    before = fault_proxy.bytes_forwarded("PUT", "partNumber")
    second = start_daemon("--heartbeat-timeout", "1", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: not path.exists() and settled(redis_client), timeout_s=60, message="the job finished")
    resent = fault_proxy.bytes_forwarded("PUT", "partNumber") - before

    assert resent == (8 - len(stored)) * PART, "only the parts the store lacked were sent again"
    assert f"multipart resumed bucket={bucket} key=big.bin upload_id={record['upload_id']}" in second.log
    obj = s3.get_object(Bucket=bucket, Key="big.bin")
    assert obj["ETag"].strip('"').endswith("-8")
    assert hashlib.md5(obj["Body"].read()).hexdigest() == md5
    assert orphaned_uploads(s3, bucket) == []
    assert recorded(redis_client, job_id) is None, "the record is cleared once the upload is complete"
    assert redis_client.llen(KEYS.dead) == 0
    Figures(
        "multipart resume",
        "one SIGKILL, 8 parts of 8 MiB",
        jobs=1,
        verified=1,
        extra={"parts_stored_at_kill": len(stored), "bytes_resent": resent, "bytes_resent_without_resume": 8 * PART},
    ).record()


def test_a_file_changed_after_the_kill_gets_a_fresh_upload_and_the_old_one_is_aborted(
    redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    write_file(path, 5 * PART, random.Random(2))
    job_id = enqueue(bucket, "big.bin", path, redis_url=redis_server.url)
    _, record, _ = kill_mid_upload(
        start_daemon, fault_proxy, redis_client, s3, bucket, "big.bin", job_id, parts_before_kill=1
    )
    md5 = write_file(path, 5 * PART, random.Random(3))  # same size, new bytes, new mtime
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))

    second = start_daemon("--heartbeat-timeout", "1")
    wait_until(lambda: not path.exists() and settled(redis_client), timeout_s=60, message="the job finished")
    assert (
        f"multipart abandoned bucket={bucket} key=big.bin upload_id={record['upload_id']} reason=the file changed since"
    ) in second.log
    assert hashlib.md5(s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()).hexdigest() == md5
    assert orphaned_uploads(s3, bucket) == []
    assert recorded(redis_client, job_id) is None


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_killed_compressed_upload_is_aborted_and_sent_again_whole(
    codec, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    path = tmp_path / "log.txt"
    md5 = write_file(path, 6 * PART, random.Random(4))  # random bytes: the stream stays multipart-sized
    job_id = enqueue(bucket, "log.txt", path, compress=codec, redis_url=redis_server.url)
    _, record, _ = kill_mid_upload(
        start_daemon, fault_proxy, redis_client, s3, bucket, "log.txt", job_id, parts_before_kill=1
    )
    assert record["compress"] == codec

    second = start_daemon("--heartbeat-timeout", "1")
    wait_until(lambda: not path.exists() and settled(redis_client), timeout_s=60, message="the job finished")
    assert "reason=a compressed stream cannot be matched part by part" in second.log
    engine = TransferEngine(s3_settings)
    try:
        assert hashlib.md5(engine.download_bytes(bucket, "log.txt")).hexdigest() == md5
    finally:
        engine.close()
    assert orphaned_uploads(s3, bucket) == []
    assert recorded(redis_client, job_id) is None


@pytest.mark.parametrize("prefix", ["s3po", "{t0},{t1},{t2}"], ids=["one-prefix", "sharded"])
def test_a_job_dead_lettered_after_the_kill_leaves_no_upload_behind(
    prefix, redis_server, redis_client, s3, bucket, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    """The record lives in the job's shard: the dead letter finds it there and aborts its upload."""
    keys = job_keys(prefix, bucket, "big.bin")
    path = tmp_path / "big.bin"
    write_file(path, 5 * PART, random.Random(5))
    job_id = enqueue(bucket, "big.bin", path, prefix=prefix, redis_url=redis_server.url)
    kill_mid_upload(
        start_daemon, fault_proxy, redis_client, s3, bucket, "big.bin", job_id, parts_before_kill=1, prefix=prefix
    )
    path.unlink()  # the file is gone before anyone stored it: the job is dead-lettered

    second = start_daemon("--heartbeat-timeout", "1", "--prefix", prefix)
    wait_until(
        lambda: count_jobs(redis_client, prefix).dead == 1 and settled(redis_client, prefix),
        timeout_s=60,
        message="the job dead-lettered",
    )
    [entry] = [json.loads(e) for e in redis_client.lrange(keys.dead, 0, -1)]
    assert "does not exist" in entry["error"]
    wait_until(lambda: orphaned_uploads(s3, bucket) == [], message="the recorded upload aborted")
    assert "reason=the job is settled" in second.log
    # the record is forgotten once the store dropped the upload: a step after the abort
    wait_until(lambda: recorded(redis_client, job_id, keys) is None, timeout_s=10, message="the record cleared")
