"""What any producer can write ends settled: a poison job as one dead letter, a duplicate as two acks.

Real s3pod subprocesses against the test Redis and S3, one prefix and a sharded prefix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until

from s3po_client import enqueue
from s3po_client.admin import count_jobs, list_dead
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3po_client.redis_url import split_prefixes

#: JSON nested past Python's recursion limit: json.loads raises RecursionError, not ValueError.
#: Job.from_json names it, and the daemon dead-letters whatever parsing raises.
POISON = b"[" * 5000 + b"]" * 5000

PREFIXES = ["s3po", "{t0},{t1}"]


@pytest.mark.parametrize("prefix", PREFIXES, ids=["one-prefix", "sharded"])
def test_a_poison_job_is_dead_lettered_once_and_the_daemon_keeps_working(
    prefix: str, redis_server: Any, redis_client: redis.Redis, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    last_shard = QueueKeys(split_prefixes(prefix)[-1])
    redis_client.lpush(last_shard.queue, POISON)
    daemon = start_daemon("--prefix", prefix, "--concurrency", "1", "--claim-batch", "1")
    wait_until(lambda: count_jobs(redis_client, prefix).dead == 1, timeout_s=20, message="the poison dead")
    good = tmp_path / "good.txt"
    good.write_text("good")
    enqueue(bucket, "good.txt", good, prefix=prefix, redis_url=redis_server.url)
    wait_until(lambda: not good.exists(), timeout_s=30, message="the good job after it uploaded")
    assert s3.get_object(Bucket=bucket, Key="good.txt")["Body"].read() == b"good"
    time.sleep(1.5)  # long enough for a held job to be swept back and claimed again
    counts = count_jobs(redis_client, prefix)
    assert (counts.pending, counts.processing, counts.delayed, counts.dead) == (0, 0, 0, 1)
    [entry] = redis_client.lrange(last_shard.dead, 0, -1)
    assert json.loads(entry)["error"].startswith("invalid job: "), entry[-300:]
    assert b"nested too deeply" in entry or b"RecursionError" in entry, entry[-300:]
    assert daemon.proc.poll() is None, "the daemon is still running"


def test_a_duplicated_job_is_acknowledged_twice_and_never_dead_lettered(
    redis_client: redis.Redis, s3: Any, bucket: str, start_daemon: Any, tmp_path: Path
) -> None:
    """The second copy finds the file deleted by the first: the stored marker says its object is stored."""
    keys = QueueKeys("s3po")
    path = tmp_path / "twice.txt"
    path.write_text("twice")
    raw = Job(bucket=bucket, key="twice.txt", path=str(path), delete=True).to_json()
    redis_client.lpush(keys.queue, raw, raw)  # a producer's retry after a timeout, say
    daemon = start_daemon("--concurrency", "1", "--claim-batch", "1")
    wait_until(
        lambda: count_jobs(redis_client).pending + count_jobs(redis_client).processing == 0 and not path.exists(),
        timeout_s=30,
        message="both copies settled",
    )
    counts = count_jobs(redis_client)
    assert (counts.delayed, counts.dead) == (0, 0), [json.loads(e) for e in redis_client.lrange(keys.dead, 0, -1)]
    assert s3.get_object(Bucket=bucket, Key="twice.txt")["Body"].read() == b"twice"
    assert daemon.log.count("uploaded job=") == 2, daemon.log


def test_a_file_removed_right_after_its_upload_read_it_is_acknowledged_as_stored(
    redis_server: Any,
    redis_client: redis.Redis,
    s3: Any,
    bucket: str,
    start_daemon: Any,
    fault_proxy: Any,
    tmp_path: Path,
) -> None:
    """Removed while its PUT is on the way: the descriptor read shows the file unchanged, so the object is its last version."""
    path = tmp_path / "removed.txt"
    path.write_text("removed")
    slow = fault_proxy.add_rule("delay", method="PUT", path="/removed.txt", delay_s=1.0, times=1)
    enqueue(bucket, "removed.txt", path, redis_url=redis_server.url)
    daemon = start_daemon("--concurrency", "1", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    wait_until(lambda: slow.hits >= 1, message="the PUT on its way")
    path.unlink()
    wait_until(lambda: "uploaded job=" in daemon.log and count_jobs(redis_client).processing == 0, message="settled")
    time.sleep(0.5)
    counts = count_jobs(redis_client)
    assert (counts.pending, counts.delayed, counts.dead) == (0, 0, 0), [e.error for e in list_dead(redis_client)]
    assert s3.get_object(Bucket=bucket, Key="removed.txt")["Body"].read() == b"removed"
    assert "vanished after its verified upload" in daemon.log
