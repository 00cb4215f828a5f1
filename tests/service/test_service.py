"""Service glue: the pidfile lock across real processes, daemon mode, and the Service lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ROOT, wait_until
from notifysocket import NotifySocket, notify_socket  # noqa: F401 - fixture
from servers import free_port

from s3po_client.errors import ConfigError
from s3pod.app import Address, Service, ServiceSettings, s3_check
from s3pod.service.notify import Notifier
from s3pod.service.pidfile import AlreadyRunningError, PidFile

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dead_pid() -> int:
    """Return the pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:9464", Address("127.0.0.1", 9464)),
        ("[::1]:8080", Address("::1", 8080)),
        ("localhost:0", Address("localhost", 0)),
        ("0.0.0.0:80", Address("0.0.0.0", 80)),
    ],
)
def test_address_parse(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:http", "host:70000", "[::1]"])
def test_address_parse_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        Address.parse(text)


def test_settings_check_themselves() -> None:
    with pytest.raises(ConfigError, match="--daemon needs --pidfile"):
        ServiceSettings(daemon=True, log_file="/tmp/x.log")
    with pytest.raises(ConfigError, match="--daemon needs --log-file"):
        ServiceSettings(daemon=True, pidfile="/tmp/x.pid")
    with pytest.raises(ConfigError, match="log format must be one of text, json"):
        ServiceSettings(log_format="xml")
    assert "tok" not in repr(ServiceSettings(api_token="tok-secret"))


# -- the pidfile -----------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from s3pod.service.pidfile import PidFile
    with PidFile(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding a pidfile's lock."""
    path = tmp_path / "s3pod.pid"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield proc, path
    proc.kill()
    proc.wait()


def test_a_held_pidfile_refuses_a_second_owner(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder
    assert path.read_text() == f"{proc.pid}\n"
    with pytest.raises(AlreadyRunningError, match=rf"already running \(pid {proc.pid}\) with pidfile {path}"):
        PidFile(str(path)).acquire()
    assert path.read_text() == f"{proc.pid}\n"  # untouched


def test_the_pidfile_of_a_killed_process_is_taken_over(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, path = holder
    proc.kill()  # SIGKILL: no clean-up, the file stays with a dead pid in it
    proc.wait()
    assert path.read_text() == f"{proc.pid}\n"
    pidfile = PidFile(str(path))
    pidfile.acquire()
    assert path.read_text() == ""  # neither the dead pid nor one that is not the daemon's yet
    pidfile.write_pid()
    assert path.read_text() == f"{os.getpid()}\n"
    pidfile.release()
    assert not path.exists()


def test_a_stale_pidfile_naming_a_reused_pid_is_taken_over(tmp_path: Path) -> None:
    # The lock, not the pid, says who holds it: a pid now used by a live process
    # (here: ours, our parent's) does not block a start.
    path = tmp_path / "s3pod.pid"
    path.write_text(f"{os.getppid()}\n")
    with PidFile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_pidfile_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open pidfile"):
        PidFile(str(tmp_path / "no" / "such.pid")).acquire()


# -- daemon mode -----------------------------------------------------------------------

DAEMON = textwrap.dedent("""
    import logging, signal, sys
    from s3pod.service.logs import configure_logging
    from s3pod.service.pidfile import AlreadyRunningError, PidFile, daemonize
    pidfile = PidFile(sys.argv[1])
    try:
        pidfile.acquire()
    except AlreadyRunningError as exc:
        sys.exit(f"s3pod: {exc}")
    daemonize(pidfile, sys.argv[2])
    configure_logging("INFO", "json", sys.argv[2])
    # SIGTERM waited for, not handled: an Event set from a handler can deadlock when the
    # signal lands while the main thread holds the Event's lock inside its wait().
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    logging.getLogger("s3pod").info("daemon running")
    signal.sigtimedwait([signal.SIGTERM], 120)
    logging.getLogger("s3pod").info("daemon stopping")
""")


def test_daemonize_detaches_keeps_the_lock_and_cleans_up(tmp_path: Path) -> None:
    pid_path, log_path = tmp_path / "d.pid", tmp_path / "d.log"
    launcher = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(pid_path), str(log_path)], env=ENV, stderr=subprocess.PIPE, text=True
    )
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, stderr  # the launcher returns at once; the daemon lives on
    pid = int(wait_until(lambda: pid_path.exists() and pid_path.read_text().strip(), message="pid written"))
    try:
        assert pid != launcher.pid and pid_alive(pid)
        wait_until(lambda: "daemon running" in log_path.read_text(), message="daemon log line")
        # The daemon holds the lock after its parent exited: a second start is refused,
        # on the terminal that ran it.
        second = subprocess.run(
            [sys.executable, "-c", DAEMON, str(pid_path), str(log_path)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"s3pod is already running (pid {pid}) with pidfile {pid_path}" in second.stderr
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), message="daemon exit")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pid_path.exists()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [line["message"] for line in lines] == ["daemon running", "daemon stopping"]


def test_daemonize_takes_over_a_stale_pidfile(tmp_path: Path) -> None:
    pid_path, log_path = tmp_path / "d.pid", tmp_path / "d.log"
    stale = dead_pid()
    pid_path.write_text(f"{stale}\n")
    subprocess.run([sys.executable, "-c", DAEMON, str(pid_path), str(log_path)], env=ENV, check=True, timeout=60)
    pid = int(
        wait_until(
            lambda: pid_path.read_text().strip() != str(stale) and pid_path.read_text().strip(),
            message="new pid written",
        )
    )
    try:
        assert pid_alive(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), message="daemon exit")


# -- the Service around the worker -------------------------------------------------------


def test_service_tells_systemd_and_serves(
    redis_client: redis.Redis, s3_server: Any, notify_socket: NotifySocket
) -> None:
    settings = ServiceSettings(metrics_listen=Address("127.0.0.1", 0), api_listen=Address("127.0.0.1", 0))
    url = f"redis://user:pw-9f8e@127.0.0.1:{redis_client.connection_pool.connection_kwargs['port']}/0"
    service = Service(
        settings,
        redis_client,
        redis_url=url,
        check_s3=s3_check(s3_server.url),
        notifier=Notifier(notify_socket.name, watchdog_usec=200_000),
    )
    with service:
        service.ready()
        ready = notify_socket.wait_for("READY")
        assert ready["STATUS"] == f"processing jobs from {url.replace('pw-9f8e', '***')} prefix=s3po"
        notify_socket.wait_for("WATCHDOG")
        assert service.metrics_server is not None and service.api_server is not None
        page = urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_server.port}/metrics", timeout=10).read()
        assert b's3pod_queue_jobs{state="pending"} 0.0' in page
        health = urllib.request.urlopen(f"{service.api_server.url}/healthz", timeout=10)
        assert json.loads(health.read()) == {"ok": True, "redis": True, "s3": True}
        ports = (service.metrics_server.port, service.api_server.port)
    notify_socket.wait_for("STOPPING")
    for port in ports:  # both closed
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)


def test_a_busy_api_port_fails_start_and_closes_the_metrics_server(redis_client: redis.Redis) -> None:
    busy = Service(ServiceSettings(api_listen=Address("127.0.0.1", 0)), redis_client, redis_url="redis://x")
    busy.start()
    try:
        assert busy.api_server is not None
        metrics_port = free_port()
        clash = ServiceSettings(
            metrics_listen=Address("127.0.0.1", metrics_port), api_listen=Address("127.0.0.1", busy.api_server.port)
        )
        service = Service(clash, redis_client, redis_url="redis://x")
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            service.start()
        assert service.api_server is None and service.metrics_server is None
        with pytest.raises(OSError):  # the metrics port was opened, then closed again
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    finally:
        busy.close()
