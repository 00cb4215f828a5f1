"""The store 20 ms away: a delay proxy between the clients and SeaweedFS, for the far cases.

This kernel has no ``sch_netem`` (``tc qdisc add … netem`` answers "Specified qdisc kind is
unknown", and ``fq`` is missing too), so the delay cannot be put on a veth pair in a
network namespace. Instead ``delayproxy.c``, compiled here with the system's C compiler,
listens on loopback and hands each side's bytes to the other ``one_way_ms`` later, in
both directions; only the S3 traffic goes through it (Redis stays on loopback). Its CPU is
not the clients': ``cpu_s()`` reads it apart, and the cases report it in a column of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from measure import ProcessMeter, die_with_parent

BENCH = Path(__file__).resolve().parent
CC = shutil.which("cc") or shutil.which("gcc")
#: at most this much held back per direction and connection: about a Linux TCP window
#: (tcp_wmem's 4 MiB maximum), so one connection carries at most ~4 MiB per round trip
WINDOW_BYTES = 4 << 20


class DelayProxy:
    """``delayproxy`` forwarding a loopback port to ``target_port``, ``one_way_ms`` each way."""

    def __init__(self, target_port: int, one_way_ms: float, build_dir: Path) -> None:
        assert CC is not None
        binary = build_dir / "delayproxy"
        subprocess.run(
            [CC, "-O2", "-pthread", "-o", str(binary), str(BENCH / "delayproxy.c")],
            check=True,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            [str(binary), str(target_port), str(one_way_ms), str(WINDOW_BYTES)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        self.meter = ProcessMeter(self.proc.pid)
        self.one_way_ms = one_way_ms

    def cpu_s(self) -> float:
        return self.meter.cpu_s()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
