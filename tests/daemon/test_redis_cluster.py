"""s3po on a real Redis Cluster (3 masters, 3 replicas on loopback): ``redis+cluster://`` everywhere.

The cluster is started once per session (``redis_cluster_servers``); each test gets it
whole and empty. The failover under a running daemon is in ``faults/test_cluster_failover.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from conftest import wait_until
from servers import RedisClusterServers

from s3po_client import Connection, enqueue, enqueue_many
from s3po_client.admin import count_jobs, list_dead, purge_dead, retry_dead
from s3po_client.errors import ConfigError
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3po_client.producer import push_jobs
from s3po_client.redis_url import connect, hash_tag, is_cluster
from s3pod.consumer import Consumer, dead_entry

PREFIX = "{s3po}"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+cluster://", "each node must be host:port"),
        ("redis+cluster://127.0.0.1", "each node must be host:port"),
        ("redis+cluster://127.0.0.1:7000/3", "only database 0"),
        ("rediss+cluster://127.0.0.1:7000", "use redis+cluster:// or redis+sentinel://"),
        ("redis+sentinel://127.0.0.1:26379", "name the service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "database must be a number"),
    ],
)
def test_bad_cluster_and_sentinel_urls_are_one_line_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        connect(url)


def test_an_unreachable_cluster_is_a_config_error_naming_it_without_the_password() -> None:
    from servers import free_port

    url = f"redis+cluster://app:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError) as caught:
        connect(url, socket_connect_timeout=1)
    assert "cannot reach the Redis Cluster at redis+cluster://app:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_a_prefix_without_hash_tag_is_refused_on_a_cluster(redis_cluster: RedisClusterServers) -> None:
    client = connect(redis_cluster.url)
    try:
        assert is_cluster(client)
        job = Job(bucket="b", key="k", path="/tmp/f")
        with pytest.raises(ConfigError, match=r"hash tag .* use '\{s3po\}' rather than 's3po'"):
            push_jobs([job], client=client, prefix="s3po")
        with pytest.raises(ConfigError, match="hash tag"):
            Consumer(client, QueueKeys("s3po"), "w1")
        with pytest.raises(ConfigError, match="hash tag"):
            count_jobs(client, "s3po")
        assert hash_tag("{s3po}0") == "s3po"
    finally:
        client.close()


def test_every_queue_key_lives_in_one_slot_on_one_master(redis_cluster: RedisClusterServers, tmp_path: Path) -> None:
    """Each protocol step (claim, every Lua script, status, dead letters) runs on the cluster."""
    client = connect(redis_cluster.url)
    keys = QueueKeys(PREFIX)
    consumer = Consumer(client, keys, "w1", heartbeat_timeout_s=5)
    try:
        jobs = [Job(bucket="b", key=f"k{i}", path=str(tmp_path / f"f{i}")) for i in range(4)]
        push_jobs(jobs, client=client, prefix=PREFIX)
        assert consumer.heartbeat() == 0
        raws = [consumer.claim(1) for _ in range(4)]
        assert all(raws) and [Job.from_json(r).key for r in raws if r] == ["k0", "k1", "k2", "k3"]
        a, b, c, d = (r for r in raws if r)
        consumer.mark_stored("job-a")
        assert consumer.was_stored("job-a")
        assert consumer.ack(a, "job-a") == (True, False)
        assert consumer.was_stored("job-a"), "left by the ack to expire, for later copies of the job"
        consumer.delay(b, Job.from_json(b).next_attempt().to_json(), 0.0)
        assert consumer.dead_letter(c, dead_entry(c, "boom", 1, "w1")) is True
        assert consumer.put_back(d) is True
        counts = count_jobs(client, PREFIX)
        assert (counts.pending, counts.processing, counts.delayed, counts.dead) == (1, 0, 1, 1)
        assert set(counts.heartbeat_age_s) == {"w1"}
        assert consumer.promote() == 1
        assert consumer.claim(1) == d  # the put-back job is taken first

        # Every key of the queue hashes to one slot, and that slot's master holds them all.
        master = redis_cluster.node(redis_cluster.master_of(keys.queue))
        names = [keys.queue, keys.processing("w1"), keys.workers, keys.delayed, keys.dead]
        assert len({master.execute_command("CLUSTER", "KEYSLOT", k) for k in names}) == 1
        assert master.exists(keys.queue, keys.processing("w1"), keys.workers, keys.dead) == 4

        # A silent worker is reaped through the cluster too (requeue.lua, server time on that node).
        other = Consumer(client, keys, "w2", heartbeat_timeout_s=5)
        other.heartbeat()
        assert other.reap(-1) == {"w1": 1}
        assert count_jobs(client, PREFIX).pending == 2

        (entry,) = list_dead(client, PREFIX)
        assert entry.error == "boom"
        assert retry_dead(client, None, PREFIX).queued == [Job.from_json(c).id]
        assert purge_dead(client, PREFIX) == 0
    finally:
        client.close()


def test_durable_enqueue_returns_once_a_replica_holds_the_job(
    redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("a")
    job_id = enqueue("b", "a.txt", f, redis_url=redis_cluster.url, prefix=PREFIX, durable=True)
    master = redis_cluster.master_of(f"{PREFIX}:queue")
    replica = next(
        p for p in redis_cluster.alive() if redis_cluster.node(p).info("replication").get("master_port") == master
    )
    pipe = redis_cluster.node(replica).pipeline(transaction=False)  # one connection: READONLY, then read
    pipe.execute_command("READONLY")
    pipe.lrange(f"{PREFIX}:queue", 0, -1)
    _, (raw,) = pipe.execute()
    assert Job.from_json(raw).id == job_id


def test_durable_enqueue_without_a_replica_says_so(
    redis_server: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    f = tmp_path / "a.txt"
    f.write_text("a")
    with pytest.raises(ConfigError, match="no replica confirmed them within 1000 ms"):
        enqueue("b", "a.txt", f, redis_url=redis_server.url, durable=True)


def test_daemon_cli_and_connection_work_through_the_cluster(
    redis_cluster: RedisClusterServers,
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    url = redis_cluster.url
    env = {**daemon_env, "S3POD_REDIS_URL": url, "S3PO_REDIS_URL": url, "S3POD_PREFIX": PREFIX, "S3PO_PREFIX": PREFIX}
    files = []
    for i in range(8):
        f = tmp_path / f"f{i}.txt"
        f.write_text(f"file {i}\n")
        files.append(f)
    enqueue_many([{"bucket": bucket, "key": f.name, "path": f} for f in files[:6]], redis_url=url, prefix=PREFIX)
    with Connection(redis_url=url, prefix=PREFIX) as conn:
        conn.upload_file(bucket, files[6].name, files[6])
    queued = cli(env, "enqueue", str(files[7]), f"s3://{bucket}/{files[7].name}")
    assert queued.returncode == 0, queued.stderr
    status = json.loads(cli(env, "status", "--json").stdout)
    assert status["pending"] == 8

    daemon = start_daemon("--concurrency", "2", "--api-listen", "127.0.0.1:0", env=env)
    wait_until(lambda: not any(f.exists() for f in files), timeout_s=60, message="all 8 uploads")
    for f, i in zip(files, range(8)):
        assert s3.get_object(Bucket=bucket, Key=f.name)["Body"].read() == f"file {i}\n".encode()

    def settled() -> bool:
        data = json.loads(cli(env, "status", "--json").stdout)
        return (data["pending"], data["processing"], data["delayed"], data["dead"]) == (0, 0, 0, 0)

    wait_until(settled, message="an empty queue in `s3po status`")
    dead = cli(env, "dead", "list")
    assert dead.returncode == 0, dead.stderr
    assert daemon.proc.poll() is None
    assert "worker" in daemon.log and "ready" in daemon.log


def test_s3pod_refuses_an_untagged_prefix_on_a_cluster(
    redis_cluster: RedisClusterServers, daemon_env: dict[str, str]
) -> None:
    env = {**daemon_env, "S3POD_REDIS_URL": redis_cluster.url}
    done = subprocess.run(
        [sys.executable, "-m", "s3pod", "--burst"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "prefix must carry a hash tag" in done.stderr


def test_http_api_enqueues_and_counts_through_the_cluster(
    redis_cluster: RedisClusterServers, s3_server: Any, tmp_path: Path
) -> None:
    from service.test_api import call

    from s3pod.app import s3_check
    from s3pod.safety import PathPolicy
    from s3pod.service.api import ApiServer

    client = connect(redis_cluster.url)
    api = ApiServer(
        client,
        host="127.0.0.1",
        port=0,
        prefix=PREFIX,
        paths=PathPolicy.from_dirs([str(tmp_path)]),
        check_s3=s3_check(s3_server.url),
    )
    try:
        f = tmp_path / "a.log"
        f.write_text("a")
        r = call(api.port, "POST", "/v1/jobs", {"bucket": "b", "key": "a.log", "path": str(f)})
        assert r.status == 202, r.json
        (raw,) = client.lrange(f"{PREFIX}:queue", 0, -1)
        assert Job.from_json(raw).id == r.json["ids"][0]
        assert call(api.port, "GET", "/v1/status").json["pending"] == 1
    finally:
        api.close()
        client.close()


def test_readme_cluster_example_runs(redis_cluster: RedisClusterServers, tmp_path: Path) -> None:
    """The ``enqueue(..., durable=True)`` example of docs/redis-cluster-sentinel.md, with this cluster's address and a real file."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "redis-cluster-sentinel.md").read_text()
    (block,) = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    f = tmp_path / "app.log"
    f.write_text("log line\n")
    code = block.replace("redis+cluster://10.0.0.1:6379,10.0.0.2:6379", redis_cluster.url).replace(
        "/var/spool/app/app.log", str(f)
    )
    assert code != block
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/redis-cluster-sentinel.md", "exec"), namespace)
    client = connect(redis_cluster.url)
    try:
        (raw,) = client.lrange(f"{PREFIX}:queue", 0, -1)
        assert Job.from_json(raw).id == namespace["job_id"]
    finally:
        client.close()


def test_per_host_prefixes_keep_each_hosts_jobs_to_its_own_daemon(
    redis_cluster: RedisClusterServers,
    s3: Any,
    bucket: str,
    start_daemon: Callable[..., Any],
    daemon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Files local to a host: one prefix (with its own hash tag) per host, as the README says.

    Each daemon may read only its own host's directory (``--allow-dir``), so a job claimed
    by the other host's daemon would be dead-lettered: none is, and each daemon's log
    names only its own host's jobs.
    """
    url = redis_cluster.url
    hosts = {}
    for host in ("a", "b"):
        spool = tmp_path / host
        spool.mkdir()
        files = []
        for i in range(6):
            f = spool / f"{host}{i}.txt"
            f.write_text(f"{host} {i}\n")
            files.append(f)
        prefix = f"{{s3po-host-{host}}}"
        ids = enqueue_many(
            [{"bucket": bucket, "key": f"{host}/{f.name}", "path": f} for f in files], redis_url=url, prefix=prefix
        )
        env = {**daemon_env, "S3POD_REDIS_URL": url, "S3POD_PREFIX": prefix}
        hosts[host] = (files, ids, prefix, start_daemon("--allow-dir", str(spool), env=env))
    every = [f for files, *_ in hosts.values() for f in files]
    wait_until(lambda: not any(f.exists() for f in every), timeout_s=60, message="both hosts' uploads")
    client = connect(url)
    try:
        for host, (_files, ids, prefix, daemon) in hosts.items():
            other = next(o for o in hosts if o != host)
            wait_until(
                lambda prefix=prefix: count_jobs(client, prefix).processing == 0, message="every job acknowledged"
            )
            assert count_jobs(client, prefix).dead == 0
            assert all(f"uploaded job={i}" in daemon.log for i in ids)
            assert not any(f"uploaded job={i}" in daemon.log for i in hosts[other][1])
    finally:
        client.close()


def test_a_user_and_password_in_a_cluster_url_reach_every_node(redis_cluster: RedisClusterServers) -> None:
    user, password = "s3po-acl", "p@ss/word:42"  # characters a URL must percent-encode
    for port in redis_cluster.alive():  # ACL users are per node: an operator sets them on each
        redis_cluster.node(port).acl_setuser(
            user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
        )
    try:
        seeds = redis_cluster.url.removeprefix("redis+cluster://")
        url = f"redis+cluster://{user}:{quote(password, safe='')}@{seeds}"
        client = connect(url)
        try:
            push_jobs([Job(bucket="b", key="k", path="/tmp/f")], client=client, prefix=PREFIX)
            assert count_jobs(client, PREFIX).pending == 1
            assert client.acl_whoami() == user
        finally:
            client.close()
        with pytest.raises((ConfigError, redis.AuthenticationError)):
            connect(f"redis+cluster://{user}:wrong@{seeds}").ping()
    finally:
        for port in redis_cluster.alive():
            redis_cluster.node(port).acl_deluser(user)
