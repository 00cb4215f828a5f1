"""What one run of one tool cost, and the interleaved rounds that compare tools pair by pair.

A ``Sample`` is one run: wall seconds, client CPU seconds (user + system of the client's
process tree, never the store's) and the client's peak RSS. Three ways to take one:

- ``run_command``: a peer's command (``aws``, ``rclone``, ``curl``) as a child process;
  ``os.wait4`` returns its rusage, which covers the children it waited for too.
- ``Driver``: a Python child (``bench/driver.py``) that has imported its library once and
  times each call from inside: ``getrusage`` deltas, and VmHWM after resetting it
  (``/proc/self/clear_refs``), so a library call pays neither interpreter start nor imports.
- ``ProcessMeter``: a long-running process (the s3pod daemon): CPU from ``/proc/PID/stat``
  before and after, VmHWM reset before and read after.

``run_rounds`` runs every contender of a case once per round, interleaved (A B C, A B C, …),
each round starting one contender further, so no tool always runs first after a cleanup.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: GNU time (Debian's package ``time``), which reports a command's own peak RSS
TIME = shutil.which("time", path="/usr/bin:/bin") or "/usr/bin/time"


@dataclass(frozen=True)
class Sample:
    """One run of one tool: wall seconds, client CPU seconds, client peak RSS, and what else it reported."""

    seconds: float
    cpu_s: float
    rss_bytes: int
    extra: Mapping[str, Any] = field(default_factory=dict)


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the benchmark dies, so nothing is left running."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_command(argv: Sequence[str], env: Mapping[str, str], *, stdout: Any = subprocess.DEVNULL) -> Sample:
    """Run ``argv`` to its end and return its wall time and its process tree's rusage.

    The command runs under GNU ``time``, whose own few hundred KiB are the only thing
    between: a child forked from this Python would report this process's RSS as its own
    peak (the kernel keeps the old memory's high-water mark across exec). CPU comes from
    ``wait4``, which covers ``time`` and everything it waited for.
    """
    with tempfile.NamedTemporaryFile() as rss, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [TIME, "--format", "%M", "--output", rss.name, *argv],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=err,
            preexec_fn=die_with_parent,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {' / '.join(tail)}")
        peak_kib = int(Path(rss.name).read_text().split()[-1])
    return Sample(seconds, usage.ru_utime + usage.ru_stime, peak_kib * 1024)


class Driver:
    """A Python child that runs named library calls (``bench/driver.py``) and measures each from inside."""

    def __init__(self, name: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = open(log_dir / f"driver-{name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "driver.py")],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            preexec_fn=die_with_parent,
        )

    def call(self, op: str, **args: Any) -> Sample:
        """Run ``op(**args)`` in the child; return its Sample (raises if the call failed there)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": args}).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"driver {self.name} died: see {self.log.name}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"driver {self.name}, {op}: {answer['error']}")
        return Sample(answer["seconds"], answer["cpu_s"], answer["rss_bytes"], answer.get("extra", {}))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ProcessMeter:
    """CPU seconds and peak RSS of a running process (all its threads), read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def reset_peak(self) -> bool:
        """Make VmHWM the current RSS (Linux ≥ 4.0); False if the kernel refused."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0


@dataclass
class Contender:
    """One tool in a case: ``run(tag)`` does the work once and returns its Sample.

    ``tag`` is fresh for every run (keys and folders are named after it). ``before`` runs
    untimed before each run (making hard links, say), ``after`` untimed after it
    (deleting what it stored), ``warm`` once before the first round.
    """

    name: str
    run: Callable[[str], Sample]
    before: Callable[[str], None] | None = None
    after: Callable[[str], None] | None = None
    warm: Callable[[], None] | None = None


@dataclass
class Results:
    """Every contender's Samples of one case, round by round (index = round)."""

    samples: dict[str, list[Sample]]

    def median_s(self, name: str) -> float:
        return statistics.median(s.seconds for s in self.samples[name])

    def median_cpu_s(self, name: str) -> float:
        return statistics.median(s.cpu_s for s in self.samples[name])

    def peak_rss_bytes(self, name: str) -> int:
        return max(s.rss_bytes for s in self.samples[name])

    def median_extra(self, name: str, key: str) -> float:
        return statistics.median(float(s.extra[key]) for s in self.samples[name])

    def ratio(self, subject: str, peer: str) -> float:
        """The median over rounds of ``peer's time / subject's time`` in the same round (above 1: subject faster)."""
        pairs = zip(self.samples[subject], self.samples[peer])
        return statistics.median(p.seconds / s.seconds for s, p in pairs)


def run_rounds(
    contenders: Sequence[Contender], rounds: int, *, label: str = "", between: Callable[[], None] | None = None
) -> Results:
    """Run each contender once per round, interleaved and rotated; ``between`` runs untimed after each run."""
    samples: dict[str, list[Sample]] = {c.name: [] for c in contenders}
    for c in contenders:
        if c.warm is not None:
            c.warm()
    for r in range(rounds):
        order = [contenders[(r + i) % len(contenders)] for i in range(len(contenders))]
        for c in order:
            tag = f"r{r}-{os.urandom(3).hex()}"
            if c.before is not None:
                c.before(tag)
            sample = c.run(tag)
            if c.after is not None:
                c.after(tag)
            if between is not None:
                between()
            samples[c.name].append(sample)
            print(
                f"  {label} round {r + 1}/{rounds}  {c.name:<44} {sample.seconds:9.4f} s  "
                f"cpu {sample.cpu_s:7.2f} s  rss {sample.rss_bytes / 2**20:6.0f} MiB",
                flush=True,
            )
    return Results(samples)
