"""The benchmark's report: the machine, the versions, one table per case with its ratios, and the targets.

``write_docs`` puts it into ``docs/BENCHMARKS.md`` between two markers and keeps the rest
of that file (the analysis, the compression-backend section) as it is.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cases import Case
from measure import Results
from targets import Target

MiB = 1024 * 1024
START = "<!-- bench:start: written by `make bench` (bench/report.py); edit outside these markers -->"
END = "<!-- bench:end -->"


@dataclass
class Machine:
    """What ran the benchmark, and how busy it was."""

    cpu: str
    cores: int
    memory_gib: float
    kernel: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: how long the whole run took (0 while it runs)
    minutes: float = 0.0

    @classmethod
    def now(cls) -> Machine:
        cpu = platform.processor() or "unknown CPU"
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        memory = 0.0
        try:
            kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
            memory = kib / 2**20
        except (OSError, StopIteration):
            pass
        return cls(cpu, os.cpu_count() or 1, memory, platform.release(), os.getloadavg())


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "s3po_client", "s3pod"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent.parent,
        ).stdout.strip()
        return head + (" with uncommitted changes to s3po" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def case_table(case: Case, results: Results) -> list[str]:
    unit = {"p50 latency": "p50 ms", "rate": "s", "time": "s"}[case.measures]
    scale = 1000.0 if case.measures == "p50 latency" else 1.0
    with_output = all("bytes_out" in s.extra for s in results.samples[case.subjects[0]])
    with_proxy = all("proxy_cpu_s" in s.extra for s in results.samples[case.subjects[0]])
    # ratios only where there are peers (the memory case has none: its rows are two jobs)
    subjects = case.subjects if any(c.name not in case.subjects for c in case.contenders) else []
    head = ["tool", f"median {unit}"]
    head += [f"÷ {subject}" for subject in subjects]
    if case.measures == "rate":
        head.append("jobs/s")
    if with_output:
        head.append("output MiB")
    head += ["CPU s", "peak RSS MiB"]
    if with_proxy:
        head.append("proxy CPU s")
    lines = [f"### {case.title}", ""]
    lines += [f"{note}" for note in case.notes]
    if case.notes:
        lines.append("")
    lines += ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for c in case.contenders:
        name = c.name
        median = results.median_s(name)
        row = [f"**{cell(name)}**" if name in case.subjects else cell(name), f"{median * scale:.3f}"]
        row += [f"{results.ratio(subject, name):.2f}×" for subject in subjects]
        if case.measures == "rate":
            row.append(f"{case.count / median:,.0f}")
        if with_output:
            outs = [int(s.extra["bytes_out"]) for s in results.samples[name] if "bytes_out" in s.extra]
            complete = len(outs) == len(results.samples[name])
            row.append(f"{sorted(outs)[len(outs) // 2] / MiB:.1f}" if complete else "")
        row += [f"{results.median_cpu_s(name):.2f}", f"{results.peak_rss_bytes(name) / MiB:.0f}"]
        if with_proxy:
            row.append(f"{results.median_extra(name, 'proxy_cpu_s'):.2f}")
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def render(
    runs: list[tuple[Case, Results]], machine: Machine, versions: dict[str, str], command: str, label: str, quick: bool
) -> str:
    rounds = sorted({case.rounds for case, _ in runs})
    lines = [
        START,
        f"## s3po beside the tools people use instead: {label}",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; s3po at commit {commit()}",
        f"- Machine: {machine.cpu}, {machine.cores} cores, {machine.memory_gib:.0f} GiB, Linux {machine.kernel}; "
        f"load average {machine.load_before[0]:.2f} before, {machine.load_after[0]:.2f} after "
        "(the machine is shared: its other work is part of the noise)",
        f"- Command: `{command}`"
        + (" (quick mode: smaller sizes and fewer rounds than the full run)" if quick else "")
        + (f"; {machine.minutes:.0f} minutes, servers' start and data included" if machine.minutes else ""),
        "- Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        f"Every case runs its tools interleaved, {' or '.join(map(str, rounds))} rounds (A B C, A B C, …, each round "
        "starting one tool further), against one redis-server and one SeaweedFS (`weed mini`, HTTP and HTTPS "
        "ports) on loopback, sharing the cores with the clients; in the far cases the S3 traffic goes through a "
        "delay proxy that puts the store 20 ms round trip away (Redis stays on loopback). A table gives each tool's median; each "
        "`÷` column the median, over rounds, of that tool's time divided by the s3po row's time in the same "
        "round (above 1: s3po is faster). CPU s: user + system seconds of the client's process tree (median), "
        "never the store's; for s3pod, the daemon's CPU plus the producer's enqueue. Peak RSS: the client "
        "process's VmHWM (s3pod: the daemon's own), reset before each run, the highest of the rounds. "
        "Library calls (s3po, boto3, redis-py) run in a warm Python process with their clients built; "
        "commands (aws, rclone, curl) are timed whole, start-up included, as they are used.",
        "",
    ]
    for case, results in runs:
        lines += case_table(case, results)
    lines += [
        "### Targets (issue 20)",
        "",
        "Issue 20's targets, and issue 9's where issue 20 does not restate them.",
        "",
        "| case | target | issue | measured | met |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for case, results in runs:
        for target in case.targets:
            measured, met = checked(target, results)
            lines.append(
                f"| {cell(case.title)} | {cell(target.describe())} | {target.issue} | {cell(measured)} "
                f"| {'met' if met else '**not met**'} |"
            )
    return "\n".join(lines + ["", END]) + "\n"


def checked(target: Target, results: Results) -> tuple[str, bool]:
    try:
        return target.check(results)
    except KeyError:  # a peer this machine lacks
        return "not measured", False


def write_docs(path: Path, section: str) -> None:
    """Put ``section`` between the markers of ``path`` (or at the top, replacing the old table); keep the rest."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if START in old and END in old:
        before, rest = old.split(START, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
    else:
        title, _, body = old.partition("\n\n")
        before = title + "\n\n"
        kept = body.find("## Compression backends")
        after = body[kept:] if kept >= 0 else body
    path.write_text(before + section + "\n" + after)


README_START = (
    "<!-- bench:headline:start: written by `make bench` (bench/report.py) from the run in docs/BENCHMARKS.md -->"
)
README_END = "<!-- bench:headline:end -->"


def headline(runs: list[tuple[Case, Results]], machine: Machine) -> str:
    """The README's table: each case's first s3po row, its speed beside every other tool, and the targets met."""
    checks = [checked(t, results)[1] for case, results in runs for t in case.targets]
    lines = [
        README_START,
        f"From the latest full run ([docs/BENCHMARKS.md](docs/BENCHMARKS.md), {time.strftime('%Y-%m-%d')}: "
        f"{machine.cores} cores, the store on the same cores; {sum(checks)} of the {len(checks)} targets met). "
        "Each ratio is the other tool's time over s3po's (above 1: s3po is faster).",
        "",
        "| case | s3po | client CPU s | beside |",
        "| --- | --- | ---: | --- |",
    ]
    for case, results in runs:
        subject = case.subjects[0]
        median = results.median_s(subject)
        shown = f"{median * 1000:.3f} ms p50" if case.measures == "p50 latency" else f"{median:.2f} s"
        peers = [c.name for c in case.contenders if c.name not in case.subjects]
        beside = " · ".join(f"{results.ratio(subject, p):.2f}× {cell(p)}" for p in peers)
        if not peers:
            beside = f"peak RSS {results.peak_rss_bytes(subject) / MiB:.0f} MiB"
        lines.append(
            f"| {cell(case.title)} | {cell(subject)}: {shown} | {results.median_cpu_s(subject):.2f} | {beside} |"
        )
    return "\n".join(lines + [README_END]) + "\n"


def write_readme(path: Path, block: str) -> None:
    """Put ``block`` between the README's headline markers (which must be there); keep the rest."""
    old = path.read_text()
    if README_START not in old or README_END not in old:
        raise RuntimeError(f"{path} has no benchmark markers ({README_END})")
    before, rest = old.split(README_START, 1)
    path.write_text(before + block.rstrip("\n") + rest.split(README_END, 1)[1])
