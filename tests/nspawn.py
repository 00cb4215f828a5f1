"""A real systemd booted in a container: ``systemd-nspawn --boot`` on a cached Debian tree.

The tree comes from ``scripts/systemd-tree`` (debootstrap, cached under ``.cache/``). The
container boots with ``--volatile=overlay`` (every write lands in a tmpfs over the tree, so
each boot starts from the same clean system) and shares the host's network, so a service
inside reaches the test servers on 127.0.0.1. Commands run inside with ``nsenter``: the
host has no systemd-machined to ask, and nothing here needs one.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from servers import _die_with_parent

#: What a command inside sees: a plain root environment, nothing of the host's.
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class Container:
    """A booted Debian with systemd as PID 1; :meth:`sh` runs a shell command inside."""

    def __init__(
        self, tree: Path, name: str, log_path: Path, *, binds: Sequence[str] = (), binds_ro: Sequence[str] = ()
    ) -> None:
        """``binds`` and ``binds_ro`` are ``HOST[:CONTAINER]`` paths mounted inside (nspawn's --bind)."""
        self.tree = tree
        self.binds = list(binds)
        self.binds_ro = list(binds_ro)
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    def boot(self, timeout_s: float = 120) -> Container:
        """Boot the tree; return once systemd says the system is up (or degraded)."""
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                "--boot",
                "--directory",
                str(self.tree),
                "--machine",
                self.name,
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                *(f"--bind={b}" for b in self.binds),
                *(f"--bind-ro={b}" for b in self.binds_ro),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout_s
        while self.leader is None:
            self._check_alive()
            self.leader = _container_init(self.proc.pid)
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd-nspawn started no init in {timeout_s}s: see {self.log_path}")
            time.sleep(0.1)
        while True:
            self._check_alive()
            state = self.sh("systemctl is-system-running --wait", check=False, timeout_s=timeout_s).stdout.strip()
            if state in ("running", "degraded"):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"the container's systemd is {state!r} after {timeout_s}s: see {self.log_path}")
            time.sleep(0.2)

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"systemd-nspawn exited with {self.proc.returncode}: "
                f"{self.log_path.read_text(errors='replace')[-2000:]}"
            )

    def sh(
        self, command: str, *, check: bool = True, input: str | None = None, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with ``sh -e`` as root inside the container, in ``/``; return its result.

        With ``check``, a non-zero exit raises, with the command's output in the message.
        """
        assert self.leader is not None, "boot() first"
        result = subprocess.run(
            [
                "nsenter",
                "--target",
                str(self.leader),
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--cgroup",
                "--root",
                "--wd",
                "--",
                "/usr/bin/env",
                "-i",
                *(f"{k}={v}" for k, v in CONTAINER_ENV.items()),
                "/bin/sh",
                "-ec",
                command,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the container, `{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def copy_in(self, source: Path, files: list[str], dest: str) -> None:
        """Copy ``files`` (relative to ``source``) to ``dest`` inside the container."""
        archive = subprocess.run(
            ["tar", "-C", str(source), "-cf", "-", "--null", "-T", "-"],
            input="\0".join(files).encode(),
            capture_output=True,
            check=True,
        ).stdout
        assert self.leader is not None
        subprocess.run(
            [
                "nsenter",
                "--target",
                str(self.leader),
                "--mount",
                "--root",
                "--",
                "/bin/sh",
                "-ec",
                f"mkdir -p {shlex.quote(dest)} && tar -C {shlex.quote(dest)} -xf - --no-same-owner",
            ],
            input=archive,
            check=True,
            capture_output=True,
        )

    def poweroff(self, timeout_s: float = 60) -> None:
        """Shut the container down cleanly (SIGTERM to nspawn halts its init), else kill it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.proc = None


def _container_init(nspawn_pid: int) -> int | None:
    """Return the host pid of the container's PID 1 (a descendant of nspawn), if it runs yet."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
        if len(nspid) >= 2 and nspid[-1] == "1":
            return pid
        todo.extend(int(c) for c in children)
    return None


def can_boot_here() -> str | None:
    """Return why this machine cannot run the container (None when it can)."""
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    if not Path("/etc/debian_version").exists():
        return "the tree is made with debootstrap from the distribution's packages: a Debian/Ubuntu host"
    return None
