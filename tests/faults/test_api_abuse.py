"""Scenario 8: the HTTP enqueue API of a real s3pod, abused: malformed, oversized, slow (slowloris),
unauthenticated, and 200 concurrent requests.

Each bad request gets a clear 4xx answer and queues nothing; slow clients are cut off and do
not keep a good client waiting; 200 clients at once each get their job queued, and every job
ends stored and verified. The daemon runs on throughout.

Then a flood: 1,000 idle connections and clients sending a byte a second. The daemon's
threads and memory stay flat, /healthz answers throughout, the extra connections get 503
with Retry-After (or are closed), and the API works once they are gone.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
from conftest import wait_until
from scenario import LONG, Figures, Spec, Stream, scale, write_file
from servers import free_port

from s3po_client.transfer import TransferEngine
from s3pod.service.api import DEFAULT_LIMITS

pytestmark = LONG

TOKEN = "api-abuse-token-5c1e"


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10,
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def status_of(answer: bytes) -> int:
    """The status of a raw answer (an HTTP/0.9-style error page carries it in its text only)."""
    import re

    found = re.match(rb"HTTP/\d\.\d (\d{3})", answer) or re.search(rb"Error code: (\d{3})", answer)
    return int(found.group(1)) if found else 0


def test_an_abused_api_answers_clearly_and_loses_nothing(
    redis_server, redis_client, s3, bucket, s3_settings, start_daemon, tmp_path: Path
) -> None:
    port = free_port()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    stream = Stream(
        start_daemon,
        "--api-listen",
        f"127.0.0.1:{port}",
        "--allow-dir",
        str(allowed),
        "--concurrency",
        "4",
        env={"S3POD_API_TOKEN": TOKEN},
    )
    daemon = stream.start()
    stream.wait_ready()
    wait_until(lambda: request(port, "GET", "/healthz")[0] == 200, message="the API up")
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.monotonic()
    answers: dict[str, int] = {}

    good = tmp_path / "allowed" / "one.bin"
    good.write_bytes(b"1" * 100)
    one = json.dumps({"bucket": bucket, "key": "one.bin", "path": str(good)}).encode()
    answers["no token"] = request(port, "POST", "/v1/jobs", one, {"Content-Type": "application/json"})[0]
    answers["wrong token"] = request(port, "POST", "/v1/jobs", one, {**auth, "Authorization": "Bearer nope"})[0]
    answers["malformed JSON"] = request(port, "POST", "/v1/jobs", b'{"bucket": ', auth)[0]
    answers["not a job"] = request(port, "POST", "/v1/jobs", b'{"what": 1}', auth)[0]
    answers["path outside --allow-dir"] = request(
        port, "POST", "/v1/jobs", json.dumps({"bucket": bucket, "key": "x", "path": "/etc/passwd"}).encode(), auth
    )[0]
    answers["oversized body (2 MB)"] = status_of(
        raw_exchange(  # answered before the body is sent
            port,
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nContent-Length: 2000000\r\n\r\n",
        )
    )
    answers["chunked body"] = status_of(
        raw_exchange(
            port,
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
        )
    )
    answers["garbage request line"] = status_of(raw_exchange(port, b"\x00\xff GARBAGE\r\n\r\n"))
    answers["100 KB header"] = status_of(
        raw_exchange(port, b"GET /v1/status HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    )
    assert redis_client.llen("s3po:queue") == 0, "no bad request queued anything"
    assert all(400 <= status < 500 for status in answers.values()), answers

    # Slowloris: many clients that send their request one byte at a time, slowly.
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(scale(50, 200))]
    cut_off = []
    began = time.monotonic()
    try:
        for s in slow:
            s.sendall(b"P")
        status, _ = request(port, "GET", "/v1/status", headers=auth, timeout_s=5)
        answered_during_slowloris = status == 200
        for _second in range(20):  # one more byte every second, for up to 20 s
            time.sleep(1.0)
            for s in list(slow):
                try:
                    s.sendall(b"O")
                except OSError:
                    cut_off.append(time.monotonic() - began)
                    slow.remove(s)
            if not slow:
                break
    finally:
        for s in slow:
            s.close()
    slow_left_after_20s = len(slow)

    # 200 clients at once, one job each.
    rng = random.Random(8)
    specs = []
    for i in range(200):
        path = allowed / f"c-{i:03d}.bin"
        specs.append(Spec(path.name, path, write_file(path, rng.randint(1, 20_000), rng), path.stat().st_size))
    statuses: list[int] = []
    lock = threading.Lock()

    failures: list[str] = []

    def post(spec: Spec) -> None:
        try:
            status, _ = request(port, "POST", "/v1/jobs", json.dumps(spec.job(bucket)).encode(), auth, timeout_s=30)
        except OSError as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=post, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses.count(202) == 200, (Counter(statuses), Counter(failures).most_common(3))
    stream.wait_settled(redis_client, specs, timeout_s=120)
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures(
            "8. HTTP API abuse",
            f"{len(answers)} bad requests, {scale(50, 200)} slowloris clients, 200 concurrent clients",
        )
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=specs, logs=stream.logs)
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    stream.sample()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    figures.extra.update(
        answers=answers,
        answered_during_slowloris=answered_during_slowloris,
        slow_clients_cut_off=len(cut_off),
        slow_clients_left_after_20s=slow_left_after_20s,
        first_cut_off_s=round(min(cut_off), 1) if cut_off else None,
        concurrent_202=statuses.count(202),
    )
    figures.record()
    figures.assert_nothing_lost()
    assert statuses.count(202) == 200, statuses
    assert figures.verified == 200 and figures.dead == 0, figures
    assert answered_during_slowloris, "a good client is answered while slow ones hold connections"
    assert slow_left_after_20s == 0, "a client that takes forever to send its request is cut off"
    assert daemon.proc.poll() is None


FLOOD = 1000
SLOW = 10
API_MAX_CONNECTIONS = DEFAULT_LIMITS.max_connections
REQUEST_TIMEOUT_S = DEFAULT_LIMITS.request_timeout_s


def threads_and_rss_kib(pid: int) -> tuple[int, int]:
    process = psutil.Process(pid)
    return process.num_threads(), process.memory_info().rss // 1024


def timed_health(port: int) -> tuple[int, float]:
    began = time.monotonic()
    try:
        status, _ = request(port, "GET", "/healthz", timeout_s=5)
    except OSError:
        status = 0
    return status, time.monotonic() - began


def what_became_of(sockets: list[socket.socket]) -> Counter[str]:
    """How each socket ended: '503' (with Retry-After), '408', 'closed', 'reset', or 'open'."""
    ends: Counter[str] = Counter()
    for s in sockets:
        s.setblocking(False)
        try:
            answer = s.recv(65536)
        except BlockingIOError:
            ends["open"] += 1
            continue
        except ConnectionResetError:
            ends["reset"] += 1
            continue
        if not answer:
            ends["closed"] += 1
        elif answer.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: " in answer:
            ends["503"] += 1
        else:
            ends[answer.split(b"\r\n")[0].decode(errors="replace")] += 1
    return ends


def test_a_flood_of_idle_and_slow_connections_is_bounded(
    redis_client, s3, bucket, start_daemon, tmp_path: Path
) -> None:
    """1,000 idle connections and clients sending a byte a second: the daemon's threads and
    memory stay flat, /healthz answers within two seconds throughout, the extra connections
    are answered 503 with Retry-After (or closed), and the API works once they are gone."""
    port = free_port()
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    daemon = start_daemon("--api-listen", f"127.0.0.1:{port}", "--allow-dir", str(allowed))
    wait_until(lambda: timed_health(port)[0] == 200, message="the API up")
    baseline = []
    for _ in range(4):
        assert timed_health(port)[0] == 200
        baseline.append(threads_and_rss_kib(daemon.proc.pid))
        time.sleep(0.5)
    threads_before = max(threads for threads, _ in baseline)
    rss_before_kib = max(rss for _, rss in baseline)

    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(FLOOD)]
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(SLOW)]
    slow_request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 64 + b"\r\n\r\n"
    cut_off_s: dict[int, float] = {}
    health: list[tuple[int, float]] = []
    samples: list[tuple[int, int]] = []
    began = time.monotonic()
    try:
        for second in range(int(REQUEST_TIMEOUT_S) + 6):
            for i, s in enumerate(slow):
                if i not in cut_off_s:
                    try:
                        s.sendall(slow_request[second : second + 1])
                    except OSError:
                        cut_off_s[i] = time.monotonic() - began
            health.append(timed_health(port))
            samples.append(threads_and_rss_kib(daemon.proc.pid))
            time.sleep(max(0.0, began + second + 1 - time.monotonic()))
        ends = what_became_of(idle)
    finally:
        for s in idle + slow:
            s.close()

    max_threads = max(threads for threads, _ in samples)
    max_rss_kib = max(rss for _, rss in samples)
    assert max_threads <= threads_before + 2, (threads_before, [threads for threads, _ in samples])
    assert max_rss_kib <= rss_before_kib + 32 * 1024, (rss_before_kib, max_rss_kib)
    assert [status for status, _ in health] == [200] * len(health), health
    assert max(seconds for _, seconds in health) < 2.0, health
    assert len(cut_off_s) == SLOW and max(cut_off_s.values()) < REQUEST_TIMEOUT_S + 4, cut_off_s
    assert ends["open"] == 0, ends
    assert ends["503"] >= FLOOD - API_MAX_CONNECTIONS, ends

    after = allowed / "after.bin"
    after.write_bytes(b"after the flood")
    job = json.dumps({"bucket": bucket, "key": "after.bin", "path": str(after)}).encode()
    assert request(port, "POST", "/v1/jobs", job, {"Content-Type": "application/json"})[0] == 202
    wait_until(lambda: not after.exists(), message="the job enqueued after the flood uploaded")
    assert s3.get_object(Bucket=bucket, Key="after.bin")["Body"].read() == b"after the flood"
    assert daemon.proc.poll() is None
