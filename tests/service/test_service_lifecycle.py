"""s3pod as a service, end to end, beyond test_service_cli.py: READY=1 held back until
Redis answers, watchdog pings, dead jobs in metrics and logs, the API token off loopback,
a Redis password, and daemon mode working after the fork and after a SIGKILL."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_until
from notifysocket import NotifySocket, notify_socket  # noqa: F401 - fixture
from prometheus_client.parser import text_string_to_metric_families
from servers import RedisServer, free_port
from test_service import pid_alive

from s3po_client import enqueue

TOKEN = "e2e-token-5c7a1d93"


def object_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - not there (yet)
        return None


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
        return True
    except OSError:
        return False


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a --log-format json log, parsed; fails on a line that is not JSON."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def test_systemd_hears_ready_only_once_redis_answers_then_watchdog_and_stopping(
    start_daemon: Callable[..., Any], notify_socket: NotifySocket, tmp_path: Path
) -> None:
    port = free_port()  # Redis will come up here, after s3pod
    env = {
        "NOTIFY_SOCKET": notify_socket.name,
        "WATCHDOG_USEC": "1000000",
        "S3POD_REDIS_URL": f"redis://127.0.0.1:{port}/0",
    }
    daemon = start_daemon(env=env)
    first = notify_socket.wait_for("STATUS", "starting: waiting for Redis and the S3 endpoint")
    assert "READY" not in first
    assert not any("READY" in m for m in notify_socket.read(timeout_s=1.5)), "READY=1 before Redis answered"
    late = RedisServer(port=port).start()
    try:
        ready = notify_socket.wait_for("READY")
        assert ready["STATUS"] == f"processing jobs from redis://127.0.0.1:{port}/0 prefix=s3po"
        notify_socket.wait_for("WATCHDOG")  # from the worker's loop, every half of WATCHDOG_USEC
        daemon.signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING")
        assert daemon.wait(30) == 0
    finally:
        late.close()


def test_dead_jobs_and_durations_reach_metrics_and_every_log_line_is_json(
    start_daemon: Callable[..., Any],
    redis_server: RedisServer,
    s3: Any,
    bucket: str,
    spool: Path,
    daemon_env: dict[str, str],
) -> None:
    port = free_port()
    daemon = start_daemon(
        "--log-format",
        "json",
        "--log-level",
        "DEBUG",
        "--metrics-listen",
        f"127.0.0.1:{port}",
        "--allow-dir",
        str(spool),
        "--concurrency",
        "2",
    )
    wait_until(lambda: answers_metrics(port), message="metrics endpoint")
    before = scrape(port)
    assert before[("s3pod_jobs_total", (("outcome", "uploaded"),))] == 0
    sizes = {f"f{i}.bin": 1000 * (i + 1) for i in range(3)}
    ids = {}
    for name, size in sizes.items():
        (spool / name).write_bytes(os.urandom(size))
        ids[enqueue(bucket, f"m/{name}", spool / name, redis_url=redis_server.url)] = (name, size)
    (spool / "lost.txt").write_text("x")
    dead_id = enqueue(f"{bucket}-missing", "k", spool / "lost.txt", redis_url=redis_server.url)

    def settled() -> bool:
        samples = scrape(port)
        return (
            samples[("s3pod_jobs_total", (("outcome", "uploaded"),))] == 3
            and samples[("s3pod_jobs_total", (("outcome", "dead"),))] == 1
        )

    wait_until(settled, message="3 uploads and 1 dead job counted")
    after = scrape(port)
    assert after[("s3pod_uploaded_bytes_total", ())] == sum(sizes.values())
    assert after[("s3pod_upload_duration_seconds_count", ())] == 3
    assert after[("s3pod_queue_jobs", (("state", "pending"),))] == 0
    assert after[("s3pod_queue_jobs", (("state", "dead"),))] == 1
    assert after[("s3pod_workers_alive", ())] == 1
    assert after[("s3pod_redis_up", ())] == 1
    for name in sizes:
        assert object_bytes(s3, bucket, f"m/{name}") is not None

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    lines = json_lines(daemon.log)  # every line is JSON, DEBUG included
    worker = [line for line in lines if line["logger"] in ("s3pod.runner", "s3pod.settlement")]
    uploaded = {line["job"]: line for line in worker if line["message"].startswith("uploaded ")}
    assert set(uploaded) == set(ids)
    for job_id, (name, size) in ids.items():
        line = uploaded[job_id]
        assert (line["bucket"], line["key"], line["bytes"], line["attempt"]) == (bucket, f"m/{name}", size, 0)
        assert isinstance(line["duration"], float) and line["level"] == "INFO"
    (dead,) = [line for line in worker if line["message"].startswith("dead ") and line["job"] == dead_id]
    assert dead["level"] == "ERROR" and "NoSuchBucket" in dead["error"]
    assert daemon_env["S3POD_SECRET_KEY"] not in daemon.log


def answers_metrics(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).close()
        return True
    except OSError:
        return False


def test_api_off_loopback_with_a_token_from_the_command_line(
    start_daemon: Callable[..., Any],
    s3: Any,
    bucket: str,
    spool: Path,
) -> None:
    port = free_port()
    daemon = start_daemon("--api-listen", f"0.0.0.0:{port}", "--api-token", TOKEN, "--allow-dir", str(spool))
    wait_until(lambda: answers(port), message="API up")  # /healthz needs no token
    (spool / "a.txt").write_text("via the API")
    job = {"bucket": bucket, "key": "api/a.txt", "path": str(spool / "a.txt")}
    assert request(port, "POST", "/v1/jobs", job)[0] == 401
    assert request(port, "POST", "/v1/jobs", job, token="wrong")[0] == 401
    assert request(port, "GET", "/v1/status")[0] == 401
    status, body = request(port, "POST", "/v1/jobs", job, token=TOKEN)
    assert status == 202 and len(body["ids"]) == 1
    wait_until(lambda: object_bytes(s3, bucket, "api/a.txt") == b"via the API", message="upload via API")
    assert request(port, "GET", "/healthz") == (200, {"ok": True, "redis": True, "s3": True})
    daemon.signal(signal.SIGTERM)
    daemon.wait(30)
    assert "--api-token on the command line is visible to other users; set S3POD_API_TOKEN" in daemon.log
    assert TOKEN not in daemon.log


def test_redis_password_works_and_is_never_logged(
    start_daemon: Callable[..., Any],
    redis_server: RedisServer,
    redis_client: redis.Redis,
    s3: Any,
    bucket: str,
    spool: Path,
) -> None:
    password = "pw-31f6e0aa"
    redis_client.acl_setuser("s3pod-e2e", enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    try:
        url = f"redis://s3pod-e2e:{password}@127.0.0.1:{redis_server.port}/0"
        daemon = start_daemon("--allow-dir", str(spool), env={"S3POD_REDIS_URL": url})
        (spool / "p.txt").write_text("through an ACL user")
        enqueue(bucket, "p.txt", spool / "p.txt", redis_url=url)
        wait_until(lambda: object_bytes(s3, bucket, "p.txt") is not None, message="upload")
        daemon.signal(signal.SIGTERM)
        daemon.wait(30)
        assert f"redis://s3pod-e2e:***@127.0.0.1:{redis_server.port}/0" in daemon.log
        assert password not in daemon.log
    finally:
        redis_client.acl_deluser("s3pod-e2e")


# -- daemon mode -------------------------------------------------------------------------


def s3pod(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3pod", *args], env=env, capture_output=True, text=True, timeout=60)


def test_daemon_mode_uploads_after_detaching_and_cleans_up(
    daemon_env: dict[str, str],
    redis_client: redis.Redis,
    redis_server: RedisServer,
    s3: Any,
    bucket: str,
    spool: Path,
    tmp_path: Path,
) -> None:
    pidfile, log = tmp_path / "s3pod.pid", tmp_path / "s3pod.log"
    args = (
        "--daemon",
        "--pidfile",
        str(pidfile),
        "--log-file",
        str(log),
        "--log-format",
        "json",
        "--allow-dir",
        str(spool),
        "--backoff-base",
        "0.05",
    )
    launched = s3pod(*args, env=daemon_env)
    assert launched.returncode == 0, launched.stderr
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="pidfile"))
    try:
        # Redis and S3 clients are made after the fork: the detached daemon uploads.
        (spool / "d.txt").write_text("from the daemon")
        enqueue(bucket, "d.txt", spool / "d.txt", redis_url=redis_server.url)
        wait_until(lambda: object_bytes(s3, bucket, "d.txt") == b"from the daemon", message="daemon upload")
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), message="daemon exit")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists()
    lines = json_lines(log.read_text())
    assert any(line["message"].startswith(f"detached: pid={pid}") for line in lines)
    assert any(
        line["logger"] == "s3pod.runner" and line["message"].startswith("uploaded ") and line["key"] == "d.txt"
        for line in lines
    )


def test_daemon_mode_takes_over_the_pidfile_of_a_killed_daemon(
    daemon_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    pidfile, log = tmp_path / "s3pod.pid", tmp_path / "s3pod.log"
    args = ("--daemon", "--pidfile", str(pidfile), "--log-file", str(log))
    assert s3pod(*args, env=daemon_env).returncode == 0
    first = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), message="pidfile"))
    os.kill(first, signal.SIGKILL)  # no clean-up: the pidfile stays, naming a dead process
    wait_until(lambda: not pid_alive(first), message="first daemon gone")
    assert pidfile.read_text().strip() == str(first)
    assert s3pod(*args, env=daemon_env).returncode == 0
    second = int(
        wait_until(
            lambda: pidfile.read_text().strip() not in ("", str(first)) and pidfile.read_text().strip(),
            message="new pid",
        )
    )
    try:
        assert pid_alive(second)
        wait_until(
            lambda: f"taking over stale pidfile {pidfile} (pid {first} is not running)" in log.read_text(),
            message="takeover logged",
        )
    finally:
        os.kill(second, signal.SIGTERM)
        wait_until(lambda: not pid_alive(second), message="daemon exit")


def test_daemon_mode_needs_a_log_file(daemon_env: dict[str, str], tmp_path: Path) -> None:
    out = s3pod("--daemon", "--pidfile", str(tmp_path / "p"), env=daemon_env)
    assert out.returncode == 2 and "--daemon needs --log-file" in out.stderr
