"""Tell systemd how the service is doing: the sd_notify protocol, without libsystemd.

systemd passes ``$NOTIFY_SOCKET`` (a ``Type=notify`` unit) and ``$WATCHDOG_USEC`` (when
``WatchdogSec=`` is set). A notification is one datagram of ``KEY=value`` lines sent to
that socket; a name starting with ``@`` is in the abstract namespace. See sd_notify(3):
https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html

Without ``$NOTIFY_SOCKET`` (run by hand, or with ``--daemon``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Sends READY/STOPPING/WATCHDOG/STATUS to systemd; a no-op outside a notify unit.

    >>> Notifier.from_env({}).ready()
    False
    """

    def __init__(self, socket_name: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = _socket_address(socket_name) if socket_name else None
        #: how often systemd wants WATCHDOG=1; None when the watchdog is off
        self.watchdog_timeout_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._last_ping = 0.0
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Return a notifier for ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC``/``$WATCHDOG_PID``.

        The watchdog is ours only when ``$WATCHDOG_PID`` is unset or names this process
        (systemd sets it so a child does not ping on the service's behalf).
        """
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw.isdigit() and int(raw) > 0 and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(env.get("NOTIFY_SOCKET") or None, usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between two WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_timeout_s is None else self.watchdog_timeout_s / 2

    def send(self, *fields: str) -> bool:
        """Send one notification of ``KEY=value`` fields; return whether it was sent."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            # systemd gone or socket unreachable: the service keeps working regardless.
            if not self._warned:
                logger.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Say start-up is complete (READY=1), with an optional status line."""
        fields = ["READY=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.send(*fields)

    def stopping(self, status: str | None = None) -> bool:
        """Say the service is shutting down (STOPPING=1)."""
        fields = ["STOPPING=1"] + ([f"STATUS={_one_line(status)}"] if status else [])
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Ping the watchdog now (WATCHDOG=1)."""
        self._last_ping = time.monotonic()
        return self.send("WATCHDOG=1")

    def watchdog_if_due(self) -> bool:
        """Ping the watchdog if half its timeout has passed since the last ping.

        Call it from the main loop as often as you like: the loop's liveness is what the
        watchdog should observe, so the ping must not come from a thread of its own.
        """
        interval = self.watchdog_interval_s
        if interval is None or time.monotonic() - self._last_ping < interval:
            return False
        return self.watchdog()


def _socket_address(name: str) -> str | bytes:
    # An abstract socket name starts with '@' in the variable and with NUL on the wire.
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def _one_line(text: str) -> str:
    return " ".join(text.split())
