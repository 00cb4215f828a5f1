"""s3po behind Redis Sentinel (a master, a replica, 3 sentinels on loopback): ``redis+sentinel://``.

The failover under a running daemon is in ``faults/test_sentinel_failover.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conftest import wait_until
from servers import RedisSentinelServers

from s3po_client import enqueue_many
from s3po_client.admin import count_jobs
from s3po_client.job import Job
from s3po_client.producer import push_jobs
from s3po_client.redis_url import connect, is_cluster


def test_the_url_finds_the_master_the_sentinels_name(redis_sentinel: RedisSentinelServers) -> None:
    client = connect(redis_sentinel.url, socket_timeout=5)
    try:
        assert not is_cluster(client)
        push_jobs([Job(bucket="b", key="k", path="/tmp/f")], client=client, durable=True)
        assert client.info("server")["tcp_port"] == redis_sentinel.master_port()
        assert count_jobs(client).pending == 1
    finally:
        client.close()


def test_daemon_and_cli_work_through_sentinel(
    redis_sentinel: RedisSentinelServers,
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    url = redis_sentinel.url
    env = {**daemon_env, "S3POD_REDIS_URL": url, "S3PO_REDIS_URL": url}
    files = []
    for i in range(5):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files], redis_url=url)
    daemon = start_daemon("--concurrency", "2", env=env)
    wait_until(lambda: not any(f.exists() for f in files), timeout_s=60, message="all 5 uploads")
    for i, f in enumerate(files):
        assert s3.get_object(Bucket=bucket, Key=f.name)["Body"].read() == f"file {i}\n".encode()
    out = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    status = json.loads(out.stdout)
    assert status["pending"] == 0 and status["dead"] == 0
    assert len(status["workers"]) == 1
    assert daemon.proc.poll() is None


def test_a_user_and_password_in_a_sentinel_url_are_the_data_nodes(redis_sentinel: RedisSentinelServers) -> None:
    import redis

    user, password = "s3po-acl", "p@ss/word:42"
    for port in redis_sentinel.data_ports:
        redis.Redis(port=port).acl_setuser(
            user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
        )
    try:
        seeds = redis_sentinel.url.removeprefix("redis+sentinel://")
        client = connect(f"redis+sentinel://{user}:{quote(password, safe='')}@{seeds}")
        try:
            assert client.acl_whoami() == user
            push_jobs([Job(bucket="b", key="k", path="/tmp/f")], client=client)
            assert count_jobs(client).pending == 1
        finally:
            client.close()
    finally:
        for port in redis_sentinel.data_ports:
            redis.Redis(port=port).acl_deluser(user)
