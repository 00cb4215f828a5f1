"""Daemon mode without systemd: a pidfile locked for the daemon's life, and detaching.

The pidfile is locked with ``flock``, not with python-daemon's ``TimeoutPIDLockFile``
(whose lock is the file's existence, so a daemon killed with SIGKILL leaves a pidfile
that blocks every later start, and whose error surfaces after the fork, where nobody
sees it). The kernel drops an ``flock`` when its holder dies, so a stale pidfile is
simply taken over, and the lock is taken before detaching, so a second start fails on
the terminal that started it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
from types import TracebackType
from typing import IO, Any

from s3po_client.errors import ConfigError, S3poError

logger = logging.getLogger(__name__)


class AlreadyRunningError(S3poError):
    """Raised when another s3pod holds the pidfile's lock; names its pid."""


class PidFile:
    """A pidfile held with ``flock`` for the life of the process.

    :meth:`acquire` (before detaching) takes the lock or raises AlreadyRunningError, and
    empties the file; entering the context (in the daemon, after the fork) writes the
    daemon's pid; leaving it removes the file.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError("pidfile not acquired")
        return self._fd

    def acquire(self) -> None:
        """Lock the pidfile; take it over if its process is gone; refuse if it is alive."""
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise ConfigError(f"cannot open pidfile {self.path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise AlreadyRunningError(
                        f"s3pod is already running (pid {holder or 'unknown'}) with pidfile {self.path}; "
                        "stop it first, or give another --pidfile"
                    ) from None
                raise ConfigError(f"cannot lock pidfile {self.path}: {exc.strerror}") from None
            # The holder may have removed the file between our open and our lock: then we
            # locked an orphan inode, and must start again on the file now at the path.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                stale = _read_pid(fd)
                if stale and stale != os.getpid():
                    logger.info("taking over stale pidfile %s (pid %d is not running)", self.path, stale)
                # Empty until the daemon writes its own pid: whoever reads it never sees
                # the stale pid, nor that of the parent about to exit.
                os.ftruncate(fd, 0)
                self._fd = fd
                return
            os.close(fd)
        raise ConfigError(f"pidfile {self.path} keeps being replaced; is another s3pod starting?")

    def write_pid(self) -> None:
        """Write this process's pid (the daemon's, after the fork)."""
        fd = self.fileno()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Remove the pidfile if it still names this process, and drop the lock."""
        if self._fd is None:
            return
        try:
            if _read_pid(self._fd) == os.getpid():
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PidFile:
        if self._fd is None:
            self.acquire()
        self.write_pid()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def daemonize(pidfile: PidFile, log_file: str, preserve: list[Any] | None = None) -> None:
    """Detach into the background (python-daemon), keeping the pidfile's lock; log to ``log_file``.

    Call after :meth:`PidFile.acquire`, before opening any socket or thread: the parent
    exits here, and only the daemon returns. Its stdout and stderr go to ``log_file``, so a
    crash's traceback is not lost; the files in ``preserve`` (log handlers') stay open.
    """
    import daemon  # python-daemon; imported here since only --daemon needs it

    stream: IO[str] = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the daemon
    context = daemon.DaemonContext(
        pidfile=pidfile,
        files_preserve=[pidfile.fileno(), stream, *(preserve or [])],
        stdout=stream,
        stderr=stream,
        working_directory="/",
        umask=0o027,
        detach_process=True,
        # SIGTERM is the worker's (warm stop); python-daemon's default would exit at once.
        signal_map={signal.SIGTTIN: None, signal.SIGTTOU: None, signal.SIGTSTP: None},
    )
    context.open()
