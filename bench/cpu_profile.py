"""Where s3po's client CPU goes: py-spy on the s3po process while it runs one case, summed up.

Starts the benchmark's servers, then samples with ``py-spy record --native`` (C frames
too: hashlib, ssl, memcpy) either the driver running ``Connection.uploadFile`` of one large
file, or the s3pod daemon storing many small files, and prints where the samples fall: by
the innermost frame (self), and by what the stack is doing (hashing, TLS, botocore, Redis,
…; a sample counts once per category on its stack). Idle threads (waiting on a socket or a
lock) are not sampled, so the counts are CPU.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/cpu_profile.py large-http --mib 1024 --runs 3
    .venv/bin/python bench/cpu_profile.py small --count 2000
    .venv/bin/python bench/cpu_profile.py small --far          # the store 20 ms away

The raw stacks (``--out``, default bench/results/profile-<what>.txt) load into any
flame-graph viewer that reads collapsed stacks (speedscope, inferno, flamegraph.pl).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import data
from measure import Driver
from rig import BUCKET, ROOT, Endpoint, Rig

#: what a sample is doing: the category of the innermost frame that matches one (leaf first)
CATEGORIES: list[tuple[str, str]] = [
    ("MD5 (Content-MD5 and the ETag check)", r"\bmd5\b|MD5"),
    ("SHA-256 of the payload (SigV4 over HTTP)", r"SigV4Auth\.payload \(botocore/auth\.py:353\)|sha256|SHA256"),
    ("copying the body in 1 MiB reads for that SHA-256", r"SigV4Auth\.payload"),
    ("CRC32", r"crc32"),
    ("gzip (ISA-L)", r"isal|igzip|CompressingReader"),
    ("reading the file (and copying it into parts)", r"_CountingReader\.read|read_exactly|FileSource|BufferedReader"),
    ("sending: socket writes (and TLS)", r"HTTPConnection\.send |sendall|SSLSocket\.send|ssl\.py"),
    ("Redis round trips (redis-py)", r"redis/"),
    ("logging", r"logging/"),
    ("json", r"json/"),
    ("botocore: building, signing, parsing requests", r"botocore/"),
    ("urllib3 / http.client", r"urllib3/|http/client"),
    ("s3pod worker and consumer", r"s3pod/"),
    ("s3po engine", r"s3po_client/"),
    ("thread pools, locks, queues", r"concurrent/futures|threading\.py|queue\.py"),
]


#: a thread that py-spy took for running but was blocked (its idle test reads the thread's
#: state, and on a busy machine a thread just woken is runnable, not yet running): by the
#: innermost frame alone
WAITS: list[tuple[str, str]] = [
    ("waiting: the settle lock (s3pod Worker._finish)", r"^Worker\._finish \("),
    ("waiting: a Redis reply", r"_read_from_socket|SocketBuffer"),
    ("waiting: an HTTP response", r"SocketIO\.readinto|do_poll|SSLSocket\.read|wait_for_read"),
    (
        "waiting: idle pool threads, locks, joins",
        r"Condition\.wait|_worker \(concurrent|_wait_for_tstate_lock|"
        r"Handler\.acquire|Event\.wait",
    ),
]


def category(frames: list[str]) -> str:
    for name, pattern in WAITS:
        if re.search(pattern, frames[-1]):
            return name
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if re.search(pattern, frame):
                return name
    return "other"


def summarize(raw: Path, top: int = 25) -> str:
    """The report on one ``py-spy --format raw`` file: categories, threads, top self frames, as Markdown."""
    self_counts: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_counts[short(frames[-1])] += count
        categories[category(frames)] += count
        threads["a pool thread" if frames[0].startswith("Thread._bootstrap") else "the main thread"] += count
    if not total:
        return "no samples\n"
    waiting = sum(n for name, n in categories.items() if name.startswith("waiting"))
    busy = total - waiting
    lines = [
        f"{total} samples of threads py-spy took for running, every thread; {waiting} of them were waiting "
        f"(below), so {busy} were CPU",
        "",
        "| what the sample is doing | share of the CPU samples |",
        "| --- | ---: |",
    ]
    lines += [
        f"| {name} | {100 * n / busy:.1f} % |" for name, n in categories.most_common() if not name.startswith("waiting")
    ]
    lines += ["", "| waits py-spy took for running | share of all samples |", "| --- | ---: |"]
    lines += [
        f"| {name} | {100 * n / total:.1f} % |" for name, n in categories.most_common() if name.startswith("waiting")
    ]
    lines += ["", "| thread | share |", "| --- | ---: |"]
    lines += [f"| {name} | {100 * n / total:.1f} % |" for name, n in threads.most_common()]
    lines += ["", "| innermost frame (self) | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {100 * n / total:.1f} % |" for name, n in self_counts.most_common(top)]
    return "\n".join(lines) + "\n"


def short(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py:12)``."""
    return re.sub(r"\(([^()]*/)?([^/()]+)\)$", r"(\2)", frame).replace("|", "\\|")


def record(pid: int, out: Path, duration_s: float, native: bool) -> subprocess.Popen[bytes]:
    """py-spy on ``pid``: without ``native``, Python frames only and without pausing the process (so
    py-spy can tell idle threads); with it, C frames too, the process paused at each sample."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    how = ["--native", "--rate", "100"] if native else ["--nonblocking", "--rate", "200"]
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            *how,
            "--format",
            "raw",
            "--duration",
            str(int(duration_s) + 1),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)  # SIGINT: py-spy writes what it sampled so far
    spy.wait(60)


def profile_large(rig: Rig, endpoint: Endpoint, mib: int, runs: int, out: Path, native: bool) -> None:
    big = data.random_file(rig.work / "large.bin", mib * 2**20)
    driver = Driver("profile", rig.env(rig.https), rig.logs)
    try:
        driver.call("s3po_upload", endpoint=endpoint.url, bucket=BUCKET, key="warm", path=str(big))
        spy = record(driver.pid, out, 3600, native)
        time.sleep(1)
        for i in range(runs):
            s = driver.call("s3po_upload", endpoint=endpoint.url, bucket=BUCKET, key=f"p/{i}", path=str(big))
            print(f"run {i + 1}: {s.seconds:.2f} s, {s.cpu_s:.2f} CPU s (py-spy is slowing it)", flush=True)
            rig.clear("p/")
        stop(spy)
    finally:
        driver.close()


def command_counts(url: str) -> collections.Counter[str]:
    """How many times Redis ran each command since it started (INFO commandstats)."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        stats = r.info("commandstats")
    finally:
        r.close()
    return collections.Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def profile_small(rig: Rig, endpoint: Endpoint, count: int, runs: int, out: Path, native: bool) -> None:
    files = data.small_files(rig.work / "small", count, 4096)
    driver = Driver("profile", rig.env(rig.https), rig.logs)
    try:
        with rig.daemon(endpoint, rig.work / "spool") as daemon:
            spy = None
            for i in range(runs + 1):  # the first run warms the daemon up, unsampled
                links = data.hard_links(files, daemon.spool / f"r{i}")
                jobs = [{"bucket": BUCKET, "key": f"p/{i}/{p.name}", "path": str(p)} for p in links]
                if i == 1:
                    spy = record(daemon.proc.pid, out, 3600, native)
                    time.sleep(1)
                cpu_before, commands_before = daemon.meter.cpu_s(), command_counts(rig.redis.url)
                s = driver.call("s3pod_jobs", redis_url=rig.redis.url, jobs=jobs)
                commands = command_counts(rig.redis.url) - commands_before
                cpu_s = daemon.meter.cpu_s() - cpu_before
                print(
                    f"run {i}: {s.seconds:.2f} s for {count} jobs; the daemon's CPU {cpu_s:.2f} s, "
                    f"{1000 * cpu_s / count:.2f} ms a job",
                    flush=True,
                )
                print(
                    "  Redis commands a job (the producer's LPUSH and the polling included): "
                    + ", ".join(f"{name} {n / count:.2f}" for name, n in commands.most_common()),
                    flush=True,
                )
                rig.clear("p/")
            if spy is not None:
                stop(spy)
    finally:
        driver.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["large-http", "large-https", "small"])
    parser.add_argument("--mib", type=int, default=1024, help="the large file's size")
    parser.add_argument("--count", type=int, default=2000, help="how many 4 KiB files")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--native",
        action="store_true",
        help="sample C frames too (pauses the process at each sample, so blocked threads count)",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--far", action="store_true", help="over HTTP with the store 20 ms away (the far cases)")
    args = parser.parse_args()
    name = f"profile-{args.what}{'-far' if args.far else ''}{'-native' if args.native else ''}.txt"
    out = args.out or ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    rig = Rig()
    try:
        endpoint = rig.far()[0] if args.far else rig.https if args.what == "large-https" else rig.http
        if args.what == "small":
            profile_small(rig, endpoint, args.count, args.runs, out, args.native)
        else:
            profile_large(rig, endpoint, args.mib, args.runs, out, args.native)
    finally:
        rig.close()
    text = summarize(out)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"raw stacks: {out}; summary: {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
