"""Redis URLs s3po accepts: user and password (ACL), TLS (rediss://), Unix sockets; passwords never shown."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import redis
from conftest import wait_until
from servers import find_binary, free_port, make_certs

from s3po_client.admin import count_jobs
from s3po_client.errors import ConfigError
from s3po_client.job import Job
from s3po_client.producer import push_jobs
from s3po_client.redaction import redact_url
from s3po_client.redis_url import connect


class ExtraRedis:
    """A redis-server of this test's own (TLS or Unix socket), stopped at the end."""

    def __init__(self, *args: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="s3po-r-", dir="/tmp")  # short: a socket path holds 108 bytes
        self.log = os.path.join(self.dir, "redis.log")
        self.proc = subprocess.Popen(
            [
                find_binary("redis-server"),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--logfile",
                self.log,
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def round_trip(url: str) -> None:
    """Enqueue a job through ``url`` and count it back, as producers and s3pod do."""
    client = connect(url)
    try:
        client.delete("s3po:queue")
        ids = push_jobs([Job(bucket="b", key="k", path="/tmp/f")], client=client)
        assert len(ids) == 1
        assert count_jobs(client).pending == 1
    finally:
        client.delete("s3po:queue")
        client.close()


def wait_ping(url: str, proc: subprocess.Popen[bytes], log: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            client = connect(url, socket_timeout=1)
            client.ping()
            client.close()
            return
        except redis.RedisError:
            if proc.poll() is not None:
                tail = Path(log).read_text()[-2000:] if os.path.exists(log) else ""
                pytest.fail(f"redis-server exited: {tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server not answering at {redact_url(url)}")
            time.sleep(0.05)


# -- user and password -----------------------------------------------------------------


@pytest.fixture
def acl_user(redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    """A Redis ACL user with a password, removed afterwards."""
    user, password = "s3pod-test", "p@ss/word:42"  # characters a URL must percent-encode
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    yield user, password
    redis_client.acl_deluser(user)


def test_user_and_password_url(acl_user: tuple[str, str], redis_server: object) -> None:
    from urllib.parse import quote

    user, password = acl_user
    port = redis_server.port  # type: ignore[attr-defined]
    url = f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{port}/0"
    round_trip(url)
    with pytest.raises(redis.AuthenticationError):
        connect(f"redis://{user}:wrong@127.0.0.1:{port}/0").ping()
    shown = redact_url(url)
    assert shown == f"redis://{user}:***@127.0.0.1:{port}/0"
    assert quote(password, safe="") not in shown and password not in shown


def test_a_bad_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        connect("http://user:topsecret@127.0.0.1:6379/0")
    assert "topsecret" not in str(caught.value)


# -- Unix socket -------------------------------------------------------------------------


def test_unix_socket_url() -> None:
    directory = tempfile.mkdtemp(prefix="s3po-u-", dir="/tmp")
    sock = os.path.join(directory, "redis.sock")
    server = ExtraRedis("--port", "0", "--unixsocket", sock, "--unixsocketperm", "700")
    try:
        url = f"unix://{sock}?db=0"
        wait_ping(url, server.proc, server.log)
        round_trip(url)
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


# -- TLS -------------------------------------------------------------------------------


def tls_redis(tmp_path: Path) -> tuple[ExtraRedis, str]:
    """Start a redis-server that speaks only TLS (certificates made with openssl); return it and its URL."""
    certs = make_certs(tmp_path)
    port = free_port()
    tls = ("--tls-port", str(port), "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]))
    server = ExtraRedis("--port", "0", *tls, "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no")
    return server, f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs['ca']}"


def test_tls_url(tmp_path: Path) -> None:
    server, url = tls_redis(tmp_path)
    port = urlsplit(url).port
    try:
        wait_ping(url, server.proc, server.log)
        round_trip(url)
        # The server speaks only TLS: a plain redis:// client gets no answer...
        with pytest.raises(redis.RedisError):
            connect(f"redis://127.0.0.1:{port}/0", socket_timeout=2, socket_connect_timeout=2).ping()
        # ...and a client that does not trust the CA refuses the server.
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            connect(f"rediss://127.0.0.1:{port}/0", socket_timeout=2).ping()
    finally:
        server.close()


# -- s3pod itself on each kind of URL ------------------------------------------------------


@pytest.mark.parametrize("kind", ["unix", "tls"])
def test_s3pod_uploads_through_the_url(kind: str, start_daemon: Any, s3: Any, bucket: str, tmp_path: Path) -> None:
    if kind == "unix":
        directory = tempfile.mkdtemp(prefix="s3po-u-", dir="/tmp")
        sock = os.path.join(directory, "redis.sock")
        server = ExtraRedis("--port", "0", "--unixsocket", sock, "--unixsocketperm", "700")
        url = f"unix://{sock}?db=0"
    else:
        directory = None
        server, url = tls_redis(tmp_path)
    try:
        wait_ping(url, server.proc, server.log)
        daemon = start_daemon(env={"S3POD_REDIS_URL": url})
        path = tmp_path / "via.txt"
        path.write_text(f"over {kind}")
        client = connect(url)
        push_jobs([Job(bucket=bucket, key="via.txt", path=str(path))], client=client)

        def stored() -> bool:
            try:
                return s3.get_object(Bucket=bucket, Key="via.txt")["Body"].read() == f"over {kind}".encode()
            except Exception:  # noqa: BLE001 - not yet
                return False

        wait_until(stored, message=f"upload with Redis over {kind}")
        wait_until(lambda: not path.exists(), message="file deleted")
        assert count_jobs(client).pending == 0
        client.close()
        daemon.stop()
        assert redact_url(url) in daemon.log
    finally:
        server.close()
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


def test_a_password_in_redis_url_on_the_command_line_warns_and_never_reaches_the_log(
    acl_user: tuple[str, str], redis_server: Any, start_daemon: Any
) -> None:
    user, password = acl_user
    url = f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{redis_server.port}/0"
    daemon = start_daemon("--redis-url", url)
    wait_until(lambda: "ready" in daemon.log, message="the daemon ready")
    daemon.stop()
    assert "a password in --redis-url on the command line is visible to other users; set S3POD_REDIS_URL" in daemon.log
    assert quote(password, safe="") not in daemon.log and password not in daemon.log


# -- the sentinels' own password -----------------------------------------------------------

SENTINEL_SECRET = "sentinel-s3cret"


def test_a_sentinel_password_in_the_query_is_redacted() -> None:
    from s3po_client.redaction import url_secrets

    url = f"redis+sentinel://app:data-pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/0?sentinel_password={SENTINEL_SECRET}"
    shown = redact_url(url)
    assert SENTINEL_SECRET not in shown and "data-pw" not in shown
    assert shown == "redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2:26379/mymaster/0?sentinel_password=***"
    assert sorted(url_secrets(url)) == sorted(["data-pw", SENTINEL_SECRET])


def test_a_sentinel_password_on_the_command_line_warns_and_never_reaches_the_log(start_daemon: Any) -> None:
    # a port where no sentinel answers: the daemon keeps trying, naming the URL as it does
    url = f"redis+sentinel://127.0.0.1:{free_port()}/mymaster?sentinel_password={SENTINEL_SECRET}"
    daemon = start_daemon("--redis-url", url)
    wait_until(lambda: "visible to other users" in daemon.log, message="the warning")
    wait_until(lambda: "not ready" in daemon.log or "Redis" in daemon.log, message="a try to reach the sentinels")
    daemon.stop()
    assert "a password in --redis-url on the command line is visible to other users; set S3POD_REDIS_URL" in daemon.log
    assert SENTINEL_SECRET not in daemon.log
