"""SIGKILL the Redis Cluster master that holds the queue under a working s3pod: its replica takes over.

Jobs enqueued durably (``WAIT``: a replica confirmed them) before the kill all land; the
daemon reconnects by itself and takes jobs enqueued after the failover too; no file is
deleted without its object stored with the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import wait_until
from servers import RedisClusterServers

from s3po_client import enqueue_many
from s3po_client.admin import count_jobs
from s3po_client.errors import ConfigError
from s3po_client.keys import QueueKeys
from s3po_client.redis_url import connect

PREFIX = "{s3po}"


def make_files(tmp_path: Path, name: str, n: int) -> dict[Path, bytes]:
    files = {}
    for i in range(n):
        f = tmp_path / f"{name}{i:03d}.txt"
        data = f"{name} {i}\n".encode() * 50
        f.write_bytes(data)
        files[f] = data
    return files


def enqueue_when_possible(url: str, bucket: str, files: dict[Path, bytes], durable: bool) -> None:
    """Enqueue the files, retrying while the cluster is still failing over (each try queues them whole or not)."""

    def attempt() -> bool:
        try:
            enqueue_many(
                [{"bucket": bucket, "key": f.name, "path": f} for f in files],
                redis_url=url,
                prefix=PREFIX,
                durable=durable,
            )
            return True
        except ConfigError:
            return False

    wait_until(attempt, timeout_s=60, interval_s=0.2, message="the cluster to take jobs again")


def test_master_sigkill_mid_stream_loses_no_acknowledged_job(
    redis_cluster: RedisClusterServers,
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    fault_proxy: Any,
    tmp_path: Path,
) -> None:
    url = redis_cluster.url
    env = {
        **daemon_env,
        "S3POD_REDIS_URL": url,
        "S3PO_REDIS_URL": url,
        "S3POD_PREFIX": PREFIX,
        "S3POD_ENDPOINT_URL": fault_proxy.url,
    }
    before = make_files(tmp_path, "before", 80)
    after = make_files(tmp_path, "after", 20)
    enqueue_when_possible(url, bucket, before, durable=True)
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.03, times=None)  # a few seconds of work in all
    daemon = start_daemon("--concurrency", "2", env=env)
    wait_until(lambda: sum(not f.exists() for f in before) >= 15, message="some uploads before the kill")

    master = redis_cluster.master_of(QueueKeys(PREFIX).queue)
    redis_cluster.kill(master)
    killed_at = time.monotonic()
    assert any(f.exists() for f in before), "the kill came in the middle of the work"
    redis_cluster.wait_takeover(QueueKeys(PREFIX).queue, master)
    print(f"replica promoted {time.monotonic() - killed_at:.1f}s after the kill")

    enqueue_when_possible(url, bucket, after, durable=False)
    everything = {**before, **after}
    wait_until(
        lambda: not any(f.exists() for f in everything),
        timeout_s=120,
        interval_s=0.25,
        message="every file uploaded after the failover",
    )
    for f, data in everything.items():  # nothing deleted without its object stored, byte for byte
        assert s3.get_object(Bucket=bucket, Key=f.name)["Body"].read() == data, f.name

    client = connect(url)
    try:

        def settled() -> bool:
            c = count_jobs(client, PREFIX)
            return (c.pending, c.processing, c.delayed) == (0, 0, 0)

        wait_until(settled, timeout_s=60, message="no job left pending, held or delayed")
        assert count_jobs(client, PREFIX).dead == 0
    finally:
        client.close()
    assert daemon.proc.poll() is None, "the daemon rode through the failover"
    log = daemon.log
    # A failover quick enough may pass unseen (redis-py retries inside the command): what is
    # promised is the jobs above and a daemon alive; an outage it saw is logged once, and its end.
    outages = log.count("Redis unavailable")
    assert outages <= 1 and (outages == 0 or "Redis is back" in log), log[-3000:]
    assert "Traceback" not in log and "bug while" not in log
