"""A socket standing in for systemd's notify socket: tests read what s3pod tells systemd."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest


class NotifySocket:
    """A bound AF_UNIX datagram socket; ``.name`` is what goes in ``$NOTIFY_SOCKET``."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            tag = f"s3po-test-{os.getpid()}-{os.urandom(4).hex()}"
            self.sock.bind(b"\0" + tag.encode())
            self.name = "@" + tag
            self.dir = None
        else:
            # A short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
            self.dir = tempfile.mkdtemp(prefix="s3po-n-", dir="/tmp")
            self.name = os.path.join(self.dir, "notify")
            self.sock.bind(self.name)
        self.received: list[dict[str, str]] = []

    def read(self, timeout_s: float = 0.0) -> list[dict[str, str]]:
        """Return the notifications that arrived (waiting up to ``timeout_s`` for the first)."""
        got: list[dict[str, str]] = []
        self.sock.settimeout(max(0.0, timeout_s))  # 0: do not wait at all
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, TimeoutError):
                break
            got.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))
            self.sock.settimeout(0.0)  # the first one came: take only what is already there
        self.received.extend(got)
        return got

    def wait_for(self, key: str, value: str = "1", timeout_s: float = 30.0) -> dict[str, str]:
        """Return the first notification (received so far or later) with ``key=value``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for message in self.received[seen:]:
                if message.get(key) == value:
                    return message
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no {key}={value} within {timeout_s}s; received {self.received}")
            self.read(min(left, 0.5))

    def close(self) -> None:
        self.sock.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()
