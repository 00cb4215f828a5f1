"""sd_notify: what s3pod.service.notify writes to $NOTIFY_SOCKET, read back from a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from notifysocket import NotifySocket, notify_socket  # noqa: F401 - fixture

from s3pod.service.notify import Notifier

ROOT = Path(__file__).resolve().parents[2]


def test_ready_status_stopping_reach_the_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.name)
    assert notifier.enabled
    assert notifier.ready("processing jobs\nfrom redis")
    assert notifier.status("busy")
    assert notifier.stopping()
    assert notify_socket.read(timeout_s=2) == [
        {"READY": "1", "STATUS": "processing jobs from redis"},  # a status is one line
        {"STATUS": "busy"},
        {"STOPPING": "1"},
    ]


def test_abstract_namespace_socket() -> None:
    sock = NotifySocket(abstract=True)
    try:
        assert sock.name.startswith("@")
        assert Notifier(sock.name).ready()
        assert sock.read(timeout_s=2) == [{"READY": "1"}]
    finally:
        sock.close()


def test_another_process_notifies_through_the_environment(notify_socket: NotifySocket) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.name, "PYTHONPATH": str(ROOT)}
    code = "from s3pod.service.notify import Notifier; n = Notifier.from_env(); n.ready(); n.stopping()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    notify_socket.wait_for("READY")
    notify_socket.wait_for("STOPPING")


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval_s is None
    assert notifier.watchdog_if_due() is False


def test_a_vanished_socket_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.ready() is False
    assert notifier.stopping() is False
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1  # warned once, not on every call


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    mine = Notifier.from_env({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval_s == 2.0
    # systemd meant the watchdog for another process (we are its child): not ours to ping.
    other = Notifier.from_env({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval_s is None
    assert Notifier.from_env({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


def test_watchdog_if_due_pings_at_most_once_per_interval(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "400000"})
    assert notifier.watchdog_if_due()  # first call: due at once
    assert not notifier.watchdog_if_due()  # 0.2 s have not passed
    time.sleep(0.25)
    assert notifier.watchdog_if_due()
    assert notify_socket.read(timeout_s=2) == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]
