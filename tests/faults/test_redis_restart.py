"""Restart redis-server (AOF on) under a working s3pod: every job still lands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from conftest import wait_until

from s3po_client import enqueue_many


def status(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def keys_in(s3, bucket: str) -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.update(o["Key"] for o in page.get("Contents", []))
    return found


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_redis_restart_in_the_middle_of_200_jobs_loses_none(
    sig, aof_redis, s3, bucket, start_daemon, fault_proxy, daemon_env, tmp_path: Path
) -> None:
    import signal

    env = {
        **daemon_env,
        "S3POD_REDIS_URL": aof_redis.url,
        "S3PO_REDIS_URL": aof_redis.url,
        "S3POD_ENDPOINT_URL": fault_proxy.url,
    }
    files = []
    for i in range(200):
        f = tmp_path / f"f{i:03d}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files], redis_url=aof_redis.url)
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.03, times=None)  # a few seconds of work in all
    daemon = start_daemon("--concurrency", "3", env=env)
    wait_until(lambda: sum(not f.exists() for f in files) >= 40, message="a fifth of the uploads")
    aof_redis.restart(down_s=1.0, sig=getattr(signal, sig))
    assert any(f.exists() for f in files), "the restart came in the middle of the work"

    def done() -> bool:
        if any(f.exists() for f in files):
            return False
        data = status(env)
        return (data["pending"], data["processing"], data["delayed"], data["dead"]) == (0, 0, 0, 0)

    wait_until(done, timeout_s=90, interval_s=0.25, message="all 200 jobs after the restart")
    assert keys_in(s3, bucket) == {f.name for f in files}
    assert daemon.proc.poll() is None
    log = daemon.log
    assert log.count("Redis unavailable") == 1, "an outage is logged once"
    assert "Redis is back" in log
    client = redis.Redis.from_url(aof_redis.url)
    assert client.llen("s3po:dead") == 0
    client.close()
