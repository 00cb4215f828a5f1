"""``s3pod`` as a service, end to end: systemd notify, JSON logs, metrics and the HTTP API
in one running daemon, daemon mode with its pidfile, and the options' guard rails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import wait_until
from notifysocket import notify_socket  # noqa: F401 - fixture
from servers import free_port


def http(method: str, url: str, body: object | None = None, token: str | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""  # not listening (yet)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_notify_ready_then_stopping_as_the_stop_begins(
    start_daemon,
    notify_socket,
    fault_proxy,
    redis_server,  # noqa: F811
    s3,
    bucket,
    tmp_path,
) -> None:
    from s3po_client import enqueue

    fault_proxy.add_rule("delay", method="PUT", delay_s=4.0)
    daemon = start_daemon(env={"NOTIFY_SOCKET": notify_socket.name, "S3POD_ENDPOINT_URL": fault_proxy.url})
    notify_socket.wait_for("READY")
    f = tmp_path / "slow.txt"
    f.write_text("in flight")
    enqueue(bucket, "slow.txt", f, redis_url=redis_server.url)
    wait_until(lambda: ("PUT", f"/{bucket}/slow.txt", "") in fault_proxy.requests, message="the upload to start")
    daemon.signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING", timeout_s=2)
    assert f.exists(), "STOPPING=1 is said when the stop begins, while the job in flight still runs"
    assert daemon.wait(30) == 0
    assert not f.exists() and s3.get_object(Bucket=bucket, Key="slow.txt")["Body"].read() == b"in flight"


def test_api_enqueues_metrics_count_and_json_logs_parse(start_daemon, redis_client, s3, bucket, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    api_port, metrics_port = free_port(), free_port()
    daemon = start_daemon(
        "--log-format",
        "json",
        "--allow-dir",
        str(spool),
        "--api-listen",
        f"127.0.0.1:{api_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    api, metrics_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}/metrics"
    wait_until(lambda: http("GET", f"{api}/healthz")[0] == 200, message="healthz 200")

    files = []
    for i in range(3):
        f = spool / f"f{i}.txt"
        f.write_text(f"file {i}")
        files.append(f)
    status, body = http(
        "POST", f"{api}/v1/jobs", [{"bucket": bucket, "key": f"api/{f.name}", "path": str(f)} for f in files]
    )
    assert status == 202, body
    ids = json.loads(body)["ids"]
    assert len(ids) == 3
    status, body = http(
        "POST", f"{api}/v1/jobs", {"bucket": bucket, "key": "x", "path": str(files[0]), "compres": "gzip"}
    )
    assert status == 400 and b"compres" in body
    status, body = http("POST", f"{api}/v1/jobs", {"bucket": bucket, "key": "x", "path": "/etc/passwd"})
    assert status == 400 and b"outside the allowed directories" in body

    wait_until(lambda: not any(f.exists() for f in files), message="three uploads")
    for i in range(3):
        assert s3.get_object(Bucket=bucket, Key=f"api/f{i}.txt")["Body"].read() == f"file {i}".encode()

    scrape = wait_until(
        lambda: (
            (t := urllib.request.urlopen(metrics_url, timeout=5).read().decode())
            and metric(t, 's3pod_jobs_total{outcome="uploaded"}') == 3
            and t
        ),
        message="metrics",
    )
    assert metric(scrape, "s3pod_uploaded_bytes_total") == sum(len(f"file {i}") for i in range(3))
    assert metric(scrape, 's3pod_queue_jobs{state="pending"}') == 0
    assert metric(scrape, "s3pod_workers_alive") == 1
    status, body = http("GET", f"{api}/v1/status")
    assert status == 200 and json.loads(body)["pending"] == 0

    lines = [json.loads(line) for line in daemon.log.splitlines() if line.startswith("{")]
    assert lines, daemon.log
    uploaded = [entry for entry in lines if entry.get("message", "").startswith("uploaded job=")]
    assert {entry["job"] for entry in uploaded} == set(ids)
    assert all(entry["bucket"] == bucket and entry["bytes"] == 6 and entry["attempt"] == 0 for entry in uploaded)


def test_daemon_mode_locks_its_pidfile_and_a_stale_one_is_taken_over(daemon_env, redis_client, tmp_path) -> None:
    pidfile, log = tmp_path / "s3pod.pid", tmp_path / "s3pod.log"
    args = [sys.executable, "-m", "s3pod", "--daemon", "--pidfile", str(pidfile), "--log-file", str(log)]
    # A pidfile left by a process that is gone: taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")
    first = subprocess.run(args, env=daemon_env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    pid = int(wait_until(lambda: pidfile.read_text().strip(), message="the daemon's pid"))
    try:
        assert pid != dead.pid
        os.kill(pid, 0)  # alive, detached from us
        second = subprocess.run(args, env=daemon_env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"already running (pid {pid})" in second.stderr
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pidfile.exists(), message="the pidfile removed on exit")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "stopped" in log.read_text()


def run_s3pod(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3pod", *args], env=env, capture_output=True, text=True, timeout=60)


def test_guard_rails_are_usage_errors(daemon_env) -> None:
    out = run_s3pod("--daemon", env=daemon_env)
    assert out.returncode == 2 and "--pidfile" in out.stderr
    out = run_s3pod("--api-listen", "not-an-address", env=daemon_env)
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
    out = run_s3pod("--api-listen", f"0.0.0.0:{free_port()}", env=daemon_env)
    assert out.returncode == 2 and "token" in out.stderr


def test_secret_key_on_the_command_line_warns_and_never_reaches_the_log(start_daemon, daemon_env) -> None:
    secret = daemon_env["S3POD_SECRET_KEY"]
    env = {k: v for k, v in daemon_env.items() if k != "S3POD_SECRET_KEY"}
    daemon = start_daemon("--secret-key", secret, "--log-level", "DEBUG", env=env)
    wait_until(lambda: "ready" in daemon.log, message="the daemon ready")
    time.sleep(0.5)
    daemon.signal(signal.SIGTERM)
    daemon.wait(30)
    assert "--secret-key on the command line" in daemon.log
    assert secret not in daemon.log
