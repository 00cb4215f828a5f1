"""The HTTP enqueue API against the real Redis and S3 servers, over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ROOT
from redis.backoff import NoBackoff
from redis.retry import Retry
from servers import free_port

from s3po_client.errors import ConfigError
from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3pod.app import s3_check
from s3pod.safety import PathPolicy
from s3pod.service.api import DEFAULT_LIMITS, ApiServer, is_loopback
from s3pod.service.httpwire import Limits

TOKEN = "test-token-8d1f0b2c"


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.json: Any = json.loads(body) if body else None


def call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        result = Response(response.status, response.headers, response.read())
    finally:
        conn.close()
    assert result.headers["Content-Type"] == "application/json"
    return result


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def make_api(redis_client: redis.Redis, s3_server: Any, spool: Path) -> Iterator[Callable[..., ApiServer]]:
    """Factory: an ApiServer on a free loopback port, allowed to read ``spool`` only."""
    servers: list[ApiServer] = []

    def make(**overrides: Any) -> ApiServer:
        options: dict[str, Any] = dict(
            host="127.0.0.1",
            port=0,
            prefix="s3po",
            paths=PathPolicy.from_dirs([str(spool)]),
            check_s3=s3_check(s3_server.url),
        )
        options.update(overrides)
        server = ApiServer(options.pop("client", redis_client), **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def spooled(spool: Path, name: str, data: bytes = b"hello") -> str:
    path = spool / name
    path.write_bytes(data)
    return str(path)


def queued(redis_client: redis.Redis) -> list[Job]:
    return [Job.from_json(raw) for raw in reversed(redis_client.lrange(QueueKeys("s3po").queue, 0, -1))]


def test_post_one_job_queues_it(make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis) -> None:
    api = make_api()
    path = spooled(spool, "a.log")
    r = call(
        api.port,
        "POST",
        "/v1/jobs",
        {
            "bucket": "b",
            "key": "logs/a.log",
            "path": path,
            "compress": "gzip",
            "headers": {"Content-Type": "text/plain"},
        },
    )
    assert r.status == 202, r.json
    (job,) = queued(redis_client)
    assert r.json == {"ids": [job.id]}
    assert (job.bucket, job.key, job.path, job.compress) == ("b", "logs/a.log", path, "gzip")
    assert dict(job.headers) == {"Content-Type": "text/plain"}
    assert job.enqueued_at is not None  # stamped, like enqueue() does


def test_post_a_list_queues_all_in_order(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis
) -> None:
    api = make_api()
    body = [{"bucket": "b", "key": f"k{i}", "path": spooled(spool, f"f{i}")} for i in range(5)]
    body[2]["id"] = "my-own-id"
    r = call(api.port, "POST", "/v1/jobs", body)
    assert r.status == 202, r.json
    jobs = queued(redis_client)
    assert [j.key for j in jobs] == ["k0", "k1", "k2", "k3", "k4"]
    assert r.json["ids"] == [j.id for j in jobs]
    assert r.json["ids"][2] == "my-own-id"


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b"[]", 400, "empty list"),
        (b'"a string"', 400, "a job must be a JSON object, got str"),
        (b'{"bucket": "b", "key": "k", "path": "/x", "compres": "gzip"}', 400, "unknown field 'compres'"),
        (b'{"bucket": "b", "path": "/x"}', 400, "missing required field 'key'"),
        (b'{"bucket": "b", "key": "k", "path": "relative"}', 400, "must be an absolute path"),
        (b'{"bucket": "b", "key": "k", "path": "/x", "retries": -1}', 400, "'retries' must be an integer >= 0"),
        (b'{"bucket": "b", "key": "k", "path": "/etc/hostname"}', 400, "outside the allowed directories"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(
    make_api: Callable[..., ApiServer], redis_client: redis.Redis, body: bytes, status: int, message: str
) -> None:
    r = call(make_api().port, "POST", "/v1/jobs", raw=body)
    assert r.status == status
    assert message in r.json["error"]
    assert queued(redis_client) == []


def test_one_bad_job_in_a_list_queues_none(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis
) -> None:
    good = {"bucket": "b", "key": "k", "path": spooled(spool, "ok")}
    r = call(make_api().port, "POST", "/v1/jobs", [good, {**good, "compress": "brotli"}, good])
    assert r.status == 400
    assert r.json["index"] == 1
    assert r.json["error"].startswith("job 1: field 'compress' must be null or one of gzip, zlib, zstd")
    assert queued(redis_client) == []


def test_paths_follow_the_daemons_rules(
    make_api: Callable[..., ApiServer], spool: Path, tmp_path: Path, redis_client: redis.Redis
) -> None:
    api = make_api()
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    (spool / "link").symlink_to(outside)
    for path, message in [
        (str(spool / "link"), "outside the allowed directories"),
        (str(spool / ".." / "secret.txt"), "outside the allowed directories"),
        (str(spool / "missing"), "does not exist"),
        (str(spool), "outside the allowed directories"),
    ]:
        r = call(api.port, "POST", "/v1/jobs", {"bucket": "b", "key": "k", "path": path})
        assert r.status == 400, path
        assert message in r.json["error"] or "not a regular file" in r.json["error"], r.json
    assert queued(redis_client) == []


def test_body_over_the_limit_gets_413(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis
) -> None:
    api = make_api(max_body_bytes=2048)
    path = spooled(spool, "f")
    body = [{"bucket": "b", "key": f"key-{i}", "path": path} for i in range(100)]
    r = call(api.port, "POST", "/v1/jobs", body)
    assert r.status == 413
    assert "over the limit of 2048 bytes" in r.json["error"]
    assert queued(redis_client) == []
    assert call(api.port, "POST", "/v1/jobs", body[:5]).status == 202


def test_missing_content_length_gets_411(make_api: Callable[..., ApiServer]) -> None:
    api = make_api()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.putrequest("POST", "/v1/jobs")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 411
    assert "Content-Length" in json.loads(response.read())["error"]
    conn.close()


def test_unknown_paths_and_methods(make_api: Callable[..., ApiServer]) -> None:
    api = make_api()
    r = call(api.port, "GET", "/v1/nothing")
    assert r.status == 404 and "no such resource: /v1/nothing" in r.json["error"]
    r = call(api.port, "GET", "/v1/jobs")
    assert r.status == 405 and r.headers["Allow"] == "POST"
    r = call(api.port, "DELETE", "/v1/status")
    assert r.status == 405 and r.headers["Allow"] == "GET"


def test_status_is_what_s3po_status_json_shows(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis, redis_server: Any
) -> None:
    api = make_api()
    assert (
        call(api.port, "POST", "/v1/jobs", [{"bucket": "b", "key": "k", "path": spooled(spool, "f")}] * 3).status == 202
    )
    redis_client.lpush(QueueKeys("s3po").dead, "{}")
    r = call(api.port, "GET", "/v1/status")
    assert r.status == 200
    cli = subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "status", "--json", "--redis-url", redis_server.url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.json == json.loads(cli.stdout)
    assert r.json["pending"] == 3 and r.json["dead"] == 1


def test_healthz_is_200_only_when_redis_and_s3_answer(make_api: Callable[..., ApiServer], s3_server: Any) -> None:
    r = call(make_api().port, "GET", "/healthz")
    assert (r.status, r.json) == (200, {"ok": True, "redis": True, "s3": True})

    r = call(make_api(check_s3=s3_check(f"http://127.0.0.1:{free_port()}")).port, "GET", "/healthz")
    assert (r.status, r.json) == (503, {"ok": False, "redis": True, "s3": False})

    dead_redis = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    api = make_api(client=dead_redis)
    r = call(api.port, "GET", "/healthz")
    assert (r.status, r.json) == (503, {"ok": False, "redis": False, "s3": True})
    assert call(api.port, "GET", "/v1/status").status == 503
    r = call(api.port, "POST", "/v1/jobs", {"bucket": "b", "key": "k", "path": "/nonexistent"})
    assert r.status == 400  # validation comes first: a bad job is a bad job whatever Redis does


def test_redis_down_while_enqueueing_gets_503(make_api: Callable[..., ApiServer], spool: Path) -> None:
    dead_redis = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    r = call(
        make_api(client=dead_redis).port, "POST", "/v1/jobs", {"bucket": "b", "key": "k", "path": spooled(spool, "f")}
    )
    assert r.status == 503
    assert "nothing was queued" in r.json["error"]


def test_token_is_checked_when_set(make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis) -> None:
    api = make_api(token=TOKEN)
    job = {"bucket": "b", "key": "k", "path": spooled(spool, "f")}
    r = call(api.port, "POST", "/v1/jobs", job)
    assert r.status == 401 and "missing bearer token" in r.json["error"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = call(api.port, "POST", "/v1/jobs", job, headers={"Authorization": "Bearer wrong"})
    assert r.status == 401 and r.json["error"] == "wrong bearer token"
    r = call(api.port, "POST", "/v1/jobs", job, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status == 401
    assert call(api.port, "GET", "/v1/status").status == 401
    assert queued(redis_client) == []
    assert call(api.port, "POST", "/v1/jobs", job, headers={"Authorization": f"Bearer {TOKEN}"}).status == 202
    assert call(api.port, "GET", "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200
    assert call(api.port, "GET", "/healthz").status == 200  # probes carry no token


def test_a_token_is_required_off_loopback(make_api: Callable[..., ApiServer]) -> None:
    for host in ("0.0.0.0", "::", ""):
        with pytest.raises(ConfigError, match="not loopback: set a bearer token"):
            make_api(host=host)
    api = make_api(host="0.0.0.0", token=TOKEN)  # all interfaces, 127.0.0.1 included
    assert call(api.port, "GET", "/v1/status").status == 401
    assert call(api.port, "GET", "/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.8.9.10")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("")
    assert not is_loopback("192.0.2.1")


def test_a_busy_port_is_a_config_error(make_api: Callable[..., ApiServer]) -> None:
    api = make_api()
    with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
        make_api(port=api.port)


def test_openapi_file_is_valid_and_matches_the_routes() -> None:
    import yaml
    from openapi_spec_validator import validate

    from s3pod.service.api import ROUTES

    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    validate(spec)
    documented = {path: tuple(sorted(m.upper() for m in ops)) for path, ops in spec["paths"].items()}
    assert documented == {path: tuple(sorted(methods)) for path, methods in ROUTES.items()}
    job_fields = set(spec["components"]["schemas"]["Job"]["properties"])
    assert job_fields == set(Job.__dataclass_fields__)


def test_responses_match_the_openapi_file(make_api: Callable[..., ApiServer], spool: Path) -> None:
    """Every status the API answered in these calls is one the OpenAPI file documents."""
    import yaml

    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    from s3po_client.transfer.bandwidth import Limiter

    api = make_api(token=TOKEN, max_body_bytes=1024, bandwidth=Limiter())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    good = {"bucket": "b", "key": "k", "path": spooled(spool, "f")}
    for method, path, body, headers in [
        ("POST", "/v1/jobs", good, auth),
        ("POST", "/v1/jobs", {**good, "x": 1}, auth),
        ("POST", "/v1/jobs", good, {}),
        ("POST", "/v1/jobs", [good] * 50, auth),
        ("GET", "/v1/status", None, auth),
        ("GET", "/v1/status", None, {}),
        ("GET", "/healthz", None, {}),
        ("GET", "/v1/bwlimit", None, auth),
        ("PUT", "/v1/bwlimit", {"rate": "5M"}, auth),
        ("PUT", "/v1/bwlimit", {"rate": "fast"}, auth),
        ("PUT", "/v1/bwlimit", {"rate": "5M"}, {}),
    ]:
        r = call(api.port, method, path, body, headers)
        assert str(r.status) in spec["paths"][path][method.lower()]["responses"], (method, path, r.status)


# -- bounds: threads, connections, deadlines (issue 18) ------------------------------------


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_reply(sock: socket.socket) -> tuple[int, http.client.HTTPMessage, Any]:
    """Read one answer from ``sock`` (status, headers, JSON body), leaving the socket open."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.headers, json.loads(response.read())


def is_open(sock: socket.socket) -> bool:
    """True if the server has neither answered nor closed ``sock``."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def test_threads_stay_fixed_however_many_connect(make_api: Callable[..., ApiServer]) -> None:
    api = make_api()
    assert call(api.port, "GET", "/healthz").status == 200
    before = threading.active_count()
    crowd = [connect(api.port) for _ in range(DEFAULT_LIMITS.max_connections + 50)]
    try:
        assert call(api.port, "GET", "/healthz").status == 200
        assert threading.active_count() == before
    finally:
        for sock in crowd:
            sock.close()


def test_a_full_api_answers_the_longest_waiting_503_to_let_a_newcomer_in(make_api: Callable[..., ApiServer]) -> None:
    api = make_api(limits=Limits(max_connections=4))
    idle = [connect(api.port) for _ in range(4)]
    try:
        assert call(api.port, "GET", "/healthz").status == 200  # the fifth connection
        status, headers, body = read_reply(idle[0])
        assert (status, headers["Retry-After"], headers["Connection"]) == (503, "2", "close")
        assert body == {"error": "the API is busy; retry after 2s"}
        assert idle[0].recv(1) == b""
        assert [is_open(sock) for sock in idle[1:]] == [True, True, True]
    finally:
        for sock in idle:
            sock.close()


def test_when_every_connection_is_being_answered_a_newcomer_gets_503(make_api: Callable[..., ApiServer]) -> None:
    release = threading.Event()
    api = make_api(check_s3=lambda: release.wait(10) and None, limits=Limits(max_connections=2))
    probes = [connect(api.port) for _ in range(2)]
    try:
        for sock in probes:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # both read and handed to the health thread, which waits on ``release``
        newcomer = connect(api.port)
        status, headers, _ = read_reply(newcomer)
        newcomer.close()
        assert (status, headers["Retry-After"]) == (503, "2")
        release.set()
        assert [read_reply(sock)[0] for sock in probes] == [200, 200]
    finally:
        release.set()
        for sock in probes:
            sock.close()


def test_a_request_that_waited_too_long_for_a_thread_gets_503(make_api: Callable[..., ApiServer]) -> None:
    calls: list[float] = []

    def first_call_slow() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(1.5)

    api = make_api(check_s3=first_call_slow, limits=Limits(request_timeout_s=1))
    probes = [connect(api.port) for _ in range(2)]
    try:
        for sock in probes:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
        first, second = (read_reply(sock) for sock in probes)
        assert first[0] == 200
        assert (second[0], second[1]["Retry-After"]) == (503, "2")
        assert len(calls) == 1  # the stale request was not answered: its client has likely gone
    finally:
        for sock in probes:
            sock.close()


def test_a_slow_request_is_cut_off_at_its_deadline(make_api: Callable[..., ApiServer]) -> None:
    api = make_api(limits=Limits(request_timeout_s=1))
    slow, idle = connect(api.port), connect(api.port)
    try:
        began = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        for byte in b"st: x\r\n":  # a byte every 0.2 s: every read is quick, the request is not
            time.sleep(0.2)
            slow.sendall(bytes([byte]))
        status, headers, body = read_reply(slow)
        assert (status, headers["Connection"]) == (408, "close")
        assert body == {"error": "the request took over 1s to arrive"}
        assert time.monotonic() - began < 2.5
        assert idle.recv(1) == b""  # an idle connection is closed without a word
        assert call(api.port, "GET", "/healthz").status == 200
    finally:
        slow.close()
        idle.close()


def test_request_bodies_held_at_once_are_bounded(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis
) -> None:
    api = make_api(limits=Limits(max_buffered_bytes=1000))
    job = json.dumps({"bucket": "b", "key": "k", "path": spooled(spool, "f")}).encode().ljust(800)
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\n"
    first, second = connect(api.port), connect(api.port)
    try:
        first.sendall(head)
        time.sleep(0.3)  # the first head is read: 800 bytes are reserved for its body
        second.sendall(head)
        status, headers, _ = read_reply(second)
        assert (status, headers["Retry-After"]) == (503, "2")
        first.sendall(job)
        assert read_reply(first)[0] == 202
        assert len(queued(redis_client)) == 1
    finally:
        first.close()
        second.close()


def test_kept_alive_connections_and_expect_100_continue(
    make_api: Callable[..., ApiServer], spool: Path, redis_client: redis.Redis
) -> None:
    api = make_api()
    sock = connect(api.port)
    try:
        for _ in range(3):
            sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_reply(sock)[0] == 200
        job = json.dumps({"bucket": "b", "key": "k", "path": spooled(spool, "f")}).encode()
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(job)
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(job)
        assert read_reply(sock)[0] == 202
        assert len(queued(redis_client)) == 1
    finally:
        sock.close()


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"\x00\xff GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505),
        (b"HEAD /healthz HTTP/1.1\r\n\r\n", 405),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_a_clear_answer(
    make_api: Callable[..., ApiServer], request_bytes: bytes, status: int
) -> None:
    with connect(make_api().port) as sock:
        sock.sendall(request_bytes)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]


def test_a_body_on_a_get_ends_the_connection_after_the_answer(make_api: Callable[..., ApiServer]) -> None:
    with connect(make_api().port) as sock:
        sock.sendall(b"\r\nGET /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        status, headers, _ = read_reply(sock)
        assert (status, headers["Connection"]) == (200, "close")
        assert sock.recv(1) == b""


def test_the_bandwidth_limit_is_shown_and_changed_with_the_token(make_api: Callable[..., ApiServer]) -> None:
    from s3po_client.transfer.bandwidth import Limiter, Rates, parse_bwlimit

    limiter = Limiter(parse_bwlimit("10M"))
    api = make_api(token=TOKEN, bandwidth=limiter)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert call(api.port, "PUT", "/v1/bwlimit", {"rate": "5M"}).status == 401
    assert limiter.rates == Rates(10 * 1024 * 1024, 10 * 1024 * 1024)

    r = call(api.port, "PUT", "/v1/bwlimit", {"rate": "5M:off"}, headers=auth)
    assert r.status == 200
    assert r.json["rate"] == "5M:off" and r.json["up_bytes_per_second"] == 5 * 1024 * 1024
    assert r.json["down_bytes_per_second"] is None
    assert limiter.rates == Rates(5 * 1024 * 1024, None), "the engine's limiter itself, at once"
    assert call(api.port, "GET", "/v1/status", headers=auth).json["bandwidth"]["rate"] == "5M:off"
    assert call(api.port, "GET", "/v1/bwlimit", headers=auth).json["bwlimit"] == "5M:off"

    r = call(api.port, "PUT", "/v1/bwlimit", {"rate": "08:00,1M 19:00,off"}, headers=auth)
    assert r.status == 200 and r.json["bwlimit"] == "08:00,1M 19:00,off"
    assert limiter.schedule == parse_bwlimit("08:00,1M 19:00,off")

    for bad, says in [
        ({"rate": "12"}, "write 12K, 12M or 12B"),
        ({"rate": 5}, 'expected {"rate": "<RATE>"}'),
        ({"limit": "5M"}, 'expected {"rate": "<RATE>"}'),
    ]:
        r = call(api.port, "PUT", "/v1/bwlimit", bad, headers=auth)
        assert r.status == 400 and says in r.json["error"], r.json
    assert call(api.port, "PUT", "/v1/bwlimit", raw=b"{nope", headers=auth).status == 400
    assert limiter.schedule == parse_bwlimit("08:00,1M 19:00,off"), "a refused request changes nothing"
