"""Which s3pod defaults are fastest here: --concurrency × --claim-batch, small files, near and far.

Starts the benchmark's servers (``rig.Rig``), then, round after round, for each store
(loopback, and 20 ms away through ``delay.DelayProxy`` with ``--far``) and each setting
(in an order that starts one setting further each round), starts s3pod with that setting,
warms it untimed (one job per thread, so its connections are open as a running daemon's
are), and times 2,000 files of 4 KiB enqueued at once until every job is acknowledged
(``Bench.via_s3pod``, as the small-files cases). Reports, per store and setting, the median
jobs/s and the median CPU per job (the daemon's and the enqueue's: robust to the load
other processes put on the machine, which the wall clock is not). docs/BENCHMARKS.md,
"The defaults, chosen by measurement", keeps its table.

    .venv/bin/python bench/daemon_sweep.py --far --rounds 3
    .venv/bin/python bench/daemon_sweep.py --settings '16x8;32x8;64x8' --stores far
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import data
from cases import FULL, Bench
from measure import Driver
from rig import Endpoint, Rig

SETTINGS = "16x4;16x8;16x16;32x4;32x8;32x16;64x4;64x8;64x16"


def run_one(b: Bench, endpoint: Endpoint, setting: str, files: list[Path], tag: str) -> tuple[float, float]:
    """s3pod with ``setting`` (``"CONCURRENCYxBATCH"``) against ``endpoint``: (seconds, CPU seconds) for ``files``."""
    concurrency, batch = setting.split("x")
    args = ["--concurrency", concurrency, "--claim-batch", batch]
    with b.rig.daemon(endpoint, b.work / f"spool-{endpoint.name}", args) as daemon:
        warm = files[: int(concurrency)]
        warming = b.via_s3pod("warm", daemon, lambda: warm, lambda t, p: f"warm/{t}/{p.name}")
        assert warming.before is not None
        warming.before(f"warm-{tag}")
        warming.run(f"warm-{tag}")
        b.rig.clear("warm/")
        timed = b.via_s3pod(setting, daemon, lambda: files, lambda t, p: f"small/{t}/{p.name}")
        assert timed.before is not None
        timed.before(tag)
        sample = timed.run(tag)
        b.rig.clear("small/")
    return sample.seconds, sample.cpu_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default=SETTINGS, help="CONCURRENCYxCLAIM_BATCH, ';'-separated")
    parser.add_argument("--stores", default="http,far", help="comma-separated, of: http (loopback), far (20 ms)")
    parser.add_argument("--count", type=int, default=FULL.small_count)
    parser.add_argument("--size", type=int, default=FULL.small_bytes, help="bytes per file")
    args = parser.parse_args()
    specs = [s.strip() for s in args.settings.split(";") if s.strip()]
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    rig = Rig()
    driver = Driver("s3po", rig.env(), rig.logs)
    try:
        b = Bench(rig, driver, driver, driver, FULL)
        endpoints = {"http": rig.http, "far": rig.far()[0] if "far" in stores else rig.http}
        files = data.small_files(b.work / "small", args.count, args.size)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {(e, s): [] for e in stores for s in specs}
        load_before = os.getloadavg()[0]
        for r in range(args.rounds):
            order = specs[r % len(specs) :] + specs[: r % len(specs)]
            for store in stores:
                for spec in order:
                    seconds, cpu = run_one(b, endpoints[store], spec, files, f"{store}-{spec}-{r}")
                    results[(store, spec)].append((seconds, cpu))
                    print(
                        f"  round {r + 1}/{args.rounds}  {store:4s} {spec:7s} {args.count / seconds:7.0f} jobs/s "
                        f"{cpu / args.count * 1000:6.2f} ms CPU/job  load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        print(
            f"\n{args.count} × {args.size} B, {args.rounds} rounds, {os.cpu_count()} CPUs, "
            f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after\n"
        )
        print("| store | --concurrency × --claim-batch | median jobs/s | CPU per job (ms) |")
        print("| --- | --- | ---: | ---: |")
        for (store, spec), rows in results.items():
            rate = args.count / statistics.median(x[0] for x in rows)
            cpu_ms = statistics.median(x[1] for x in rows) / args.count * 1000
            print(f"| {store} | {spec.replace('x', ' × ')} | {rate:.0f} | {cpu_ms:.2f} |")
    finally:
        driver.proc.terminate()
        rig.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
