"""Benchmarks: s3po side by side with boto3, the AWS CLI, rclone and curl, in one run, as ratios.

Starts its own redis-server and SeaweedFS (HTTP and HTTPS) on loopback, makes the data,
then runs every case of issue 20 (two of them with the store 20 ms away) with its tools
interleaved, round after round, and reports medians, pair-by-pair ratios, client CPU
seconds and peak RSS, and which targets are met; the full run also writes the README's
headline table from the same results.

    make bench                          # the full run; writes docs/BENCHMARKS.md
    make bench-quick                    # under 3 minutes: smaller sizes, 2 rounds
    .venv/bin/python bench/run.py --cases large,small --rounds 3

The modules: ``rig`` (servers, cleanup, the daemon), ``data`` (the files), ``tools`` (the
peers' commands), ``driver`` (the child that runs library calls), ``measure`` (samples and
rounds), ``cases`` (what each case runs), ``targets``, ``report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import delay
import report
import tools
from cases import CASES, FULL, QUICK, RUN_ORDER, Bench, Case
from measure import Driver, Results
from rig import ROOT, Rig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and 2 rounds: under 3 minutes")
    parser.add_argument("--rounds", type=int, help="rounds per case (default 5; 2 with --quick)")
    parser.add_argument(
        "--large-mib",
        type=int,
        help="the large file's (and the download's) size in MiB, for a check between the quick and the full run",
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--label", default="latest run", help="what the report calls this run (e.g. baseline)")
    parser.add_argument(
        "--out",
        help="where the report goes (default: docs/BENCHMARKS.md after a full run of "
        "every case, else bench/results/latest.md)",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    if args.large_mib:
        sizes = dataclasses.replace(sizes, large_bytes=args.large_mib * 1024 * 1024)
    full = not args.quick and not args.large_mib and set(names) == set(CASES) and sizes.rounds >= 5
    out = Path(args.out) if args.out else ROOT / ("docs/BENCHMARKS.md" if full else "bench/results/latest.md")
    partial = ROOT / "bench/results/partial.md" if out.name == "BENCHMARKS.md" else out.with_suffix(".partial.md")
    for name in tools.missing():
        print(f"{name} not found: its rows are left out (make bench installs it)")
    if delay.CC is None:
        print("no C compiler (cc) for bench/delayproxy.c: the far cases are left out (make bench installs gcc)")
        names = [n for n in names if not n.endswith("-far")]
    if args.quick:
        print("quick mode: smaller sizes and fewer rounds than the full run; its figures are not the report's")

    machine = report.Machine.now()
    started = time.monotonic()
    rig = Rig()
    env = rig.env(rig.https)  # the drivers trust the HTTPS port's CA (nothing changes over HTTP)
    drivers = {name: Driver(name, env, rig.logs) for name in ("s3po", "boto3", "redis")}
    bench = Bench(rig, drivers["s3po"], drivers["boto3"], drivers["redis"], sizes)
    done: dict[str, tuple[Case, Results]] = {}
    runs: list[tuple[Case, Results]] = []
    try:
        for name in sorted(names, key=RUN_ORDER.index):
            with CASES[name](bench) as case:
                done[name] = (case, case.run())
            runs = [done[n] for n in CASES if n in done]  # reported in the order
            # what is done so far, in case a long run is cut short
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(report.render(runs, machine, {}, "(partial)", args.label, args.quick))
    finally:
        for driver in drivers.values():
            driver.close()
        rig.close()
    machine.load_after = os.getloadavg()
    command = "make bench" if full and not args.out else "bench/run.py " + shlex.join(sys.argv[1:])
    machine.minutes = (time.monotonic() - started) / 60
    text = report.render(runs, machine, tools.versions(), command, args.label, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name == "BENCHMARKS.md":
        report.write_docs(out, text)
        report.write_readme(out.parent.parent / "README.md", report.headline(runs, machine))
    else:
        out.write_text(text)
        out.with_suffix(".readme.md").write_text(report.headline(runs, machine))
    samples = {
        case.title: {name: [dataclasses.asdict(x) for x in xs] for name, xs in results.samples.items()}
        for case, results in runs
    }
    (ROOT / "bench" / "results" / f"{out.stem}.samples.json").write_text(json.dumps(samples, indent=1))
    print("\n" + text)
    print(f"written to {out} after {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
