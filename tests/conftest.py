"""Test rig: a real redis-server and a real S3 server (SeaweedFS) on free loopback ports.

Session fixtures start them once; function fixtures give each test a flushed Redis, a
fresh bucket, and factories for s3pod subprocesses that are stopped afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from servers import REGION, RedisClusterServers, RedisSentinelServers, RedisServer, S3Server, stop_process  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# Keep the developer's own AWS setup out of the tests, and never ask an instance
# metadata service for credentials.
for _name in (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "S3PO_REDIS_URL",
):
    os.environ.pop(_name, None)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

# A suite started in the background by a script (`make test &`, nohup) inherits SIGINT ignored,
# and an ignored signal stays ignored across exec: the processes the tests start would not hear
# the Ctrl-C the tests send them. Python's own handler is reset to the default at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


#: The longest modules, measured (--durations), longest first: on pytest-xdist's workers
#: (``--dist loadfile --no-loadscope-reorder``: a module's tests on one worker, modules handed
#: out in collection order) they start first, so none of them is left running alone at the end.
LONGEST_FIRST = (
    "test_systemd_boot.py",
    "test_transfer_memory.py",
    "test_budget.py",
    "test_memory_budget.py",
    "test_sigkill_loop.py",
    "test_many_daemons.py",
    "test_types.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a pytest-xdist worker, put the tests of :data:`LONGEST_FIRST` first, in that order.

    The workers' collections are what the controller schedules from (every worker sorts alike).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_cluster_servers() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of 3 masters and 3 replicas, started once for the session (about 6 s)."""
    cluster = RedisClusterServers().start()
    yield cluster
    cluster.close()


@pytest.fixture
def redis_cluster(redis_cluster_servers: RedisClusterServers) -> Iterator[RedisClusterServers]:
    """The session's cluster, whole again (a node a test killed is back as a replica) and empty."""
    redis_cluster_servers.heal()
    redis_cluster_servers.flush()
    yield redis_cluster_servers


@pytest.fixture(scope="session")
def redis_sentinel_servers() -> Iterator[RedisSentinelServers]:
    """A master, a replica and 3 Redis Sentinels, started once for the session (about 5 s)."""
    servers = RedisSentinelServers().start()
    yield servers
    servers.close()


@pytest.fixture
def redis_sentinel(redis_sentinel_servers: RedisSentinelServers) -> Iterator[RedisSentinelServers]:
    """The session's sentinel setup with a master and a synced replica (a node a test killed is back), empty."""
    redis_sentinel_servers.heal()
    redis_sentinel_servers.flush()
    yield redis_sentinel_servers


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the test Redis, flushed before and after the test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    try:
        client.flushall()
    except redis.RedisError:
        pass
    client.close()


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    """A boto3 client on the test S3 server, for arranging and asserting."""
    if s3_server.proc is None or s3_server.proc.poll() is not None:
        s3_server.start()
    return s3_server.client()


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh, empty bucket for this test, deleted with its contents afterwards.

    SeaweedFS gives each bucket volumes of its own; buckets left behind would use up the
    server's volume slots over a long run.
    """
    name = f"t-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    yield name
    try:
        s3.delete_bucket(Bucket=name)  # the server runs with -s3.allowDeleteBucketNotEmpty
    except Exception:  # noqa: BLE001 - the server may be down after a fault test; nothing to keep
        pass


@pytest.fixture
def s3_settings(s3_server: S3Server) -> Any:
    """S3Settings pointing at the test S3 server."""
    from s3po_client.settings import S3Settings

    return S3Settings(
        access_id=s3_server.access_key, secret_key=s3_server.secret_key, region=REGION, endpoint_url=s3_server.url
    )


@pytest.fixture
def daemon_env(redis_server: RedisServer, s3_server: S3Server) -> dict[str, str]:
    """Environment for an s3pod subprocess talking to the test servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3POD_", "S3PO_"))}
    env.update(s3_server.daemon_env())
    env["S3POD_REDIS_URL"] = redis_server.url
    env["S3PO_REDIS_URL"] = redis_server.url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Daemon:
    """An ``s3pod`` subprocess; its stderr is kept in a file for assertions."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s3pod", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 60) -> int:
        return self.proc.wait(timeout_s)

    def stop(self) -> int | None:
        stop_process(self.proc, signal.SIGTERM, timeout_s=30)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(
    daemon_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Callable[..., Daemon]]:
    """Factory: ``start_daemon("--concurrency", "2", env={...})`` runs s3pod until the test ends."""
    daemons: list[Daemon] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(
            ["--backoff-base", "0.05", *args], {**daemon_env, **(env or {})}, tmp_path / f"s3pod-{len(daemons)}.log"
        )
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[Any]:
    """A FaultProxy in front of the test S3 server; point s3pod at ``fault_proxy.url``."""
    from faultproxy import FaultProxy

    with FaultProxy(s3_server.port) as proxy:
        yield proxy


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own with AOF on (appendfsync always), to restart or kill."""
    server = RedisServer(appendonly=True).start()
    yield server
    server.close()


def wait_until(
    predicate: Callable[[], Any], timeout_s: float = 30, interval_s: float = 0.05, message: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)
