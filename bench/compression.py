"""Compression backends side by side: which one s3po should use for gzip and zlib.

Compresses the same data with every candidate available on this machine, in memory (the
codecs) or through a pipe (the ``gzip`` command), and prints one Markdown table: MB/s of
input, output ratio, and speed relative to the ``gzip`` command at its default level.

    .venv/bin/python bench/compression.py --mib 128
    PYTHONPATH=/tmp/zng .venv/bin/python bench/compression.py   # with zlib-ng installed aside

Data: log-like text (timestamps, levels, paths, numbers, a little randomness), which
compresses about like real logs, the files s3po is most often handed.
"""

from __future__ import annotations

import argparse
import gzip as stdlib_gzip
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable

CHUNK = 1024 * 1024


def make_logs(size: int, seed: int = 7) -> bytes:
    """Return ``size`` bytes of log-like text."""
    rng = random.Random(seed)
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR"]
    words = (
        "request served user cache miss hit upstream timeout retry queue job uploaded "
        "bucket key worker claimed verified deleted connection reset"
    ).split()
    lines = []
    total = 0
    t = 1_700_000_000.0
    while total < size:
        t += rng.random()
        line = (
            f"2024-06-01T{int(t) % 86400 // 3600:02d}:{int(t) % 3600 // 60:02d}:{t % 60:06.3f}Z "
            f"{rng.choice(levels)} pid={rng.randint(1000, 1100)} "
            f"path=/srv/app/{rng.choice(words)}/{rng.randint(0, 99999)} "
            f"{' '.join(rng.choice(words) for _ in range(rng.randint(3, 9)))} "
            f"took={rng.random() * 100:.2f}ms id={rng.getrandbits(64):016x}\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def stream(compressobj: Callable[[], object]) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        c = compressobj()
        out = 0
        for i in range(0, len(data), CHUNK):
            out += len(c.compress(data[i : i + CHUNK]))  # type: ignore[attr-defined]
        return out + len(c.flush())  # type: ignore[attr-defined]

    return run


def command(argv: list[str]) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True)
        return len(proc.stdout)

    return run


def candidates() -> dict[str, Callable[[bytes], int]]:
    found: dict[str, Callable[[bytes], int]] = {}
    try:
        from isal import isal_zlib

        for level in (0, 1, 2, 3):
            found[f"isal gzip level {level}"] = stream(
                lambda level=level: isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
            )
        found["isal zlib level 1"] = stream(lambda: isal_zlib.compressobj(1, isal_zlib.DEFLATED, 15))
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        for level in (1, 6):
            found[f"zlib-ng gzip level {level}"] = stream(
                lambda level=level: zlib_ng.compressobj(level, zlib_ng.DEFLATED, 31)
            )
    except ImportError:
        pass
    for level in (1, 6):
        found[f"stdlib zlib gzip level {level}"] = stream(
            lambda level=level: zlib.compressobj(level, zlib.DEFLATED, 31)
        )
    found["stdlib gzip.compress level 9 (GzipFile default)"] = lambda data: len(stdlib_gzip.compress(data))
    if shutil.which("gzip"):
        found["gzip command -1"] = command(["gzip", "-1", "-c"])
        found["gzip command (default -6)"] = command(["gzip", "-c"])
    if shutil.which("pigz"):
        found["pigz command (default -6)"] = command(["pigz", "-c"])
    try:
        import zstandard

        for level in (1, 3):
            found[f"zstandard level {level}"] = stream(
                lambda level=level: zstandard.ZstdCompressor(level=level).compressobj()
            )
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=128, help="MiB of data (default 128)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per candidate; best kept (default 3)")
    args = parser.parse_args()
    data = make_logs(args.mib * CHUNK)
    results: list[tuple[str, float, float]] = []
    for name, run in candidates().items():
        best = float("inf")
        size = 0
        for _ in range(args.repeat):
            started = time.perf_counter()
            size = run(data)
            best = min(best, time.perf_counter() - started)
        results.append((name, len(data) / best / 1e6, size / len(data)))
        print(f"  {name}: {results[-1][1]:.0f} MB/s ratio {results[-1][2]:.3f}", file=sys.stderr)
    reference = next((speed for name, speed, _ in results if name == "gzip command (default -6)"), None)
    print(
        f"{args.mib} MiB of log-like text, best of {args.repeat}, one core per candidate "
        f"(os.cpu_count()={os.cpu_count()}).\n"
    )
    print("| backend | MB/s (input) | output / input | speed vs `gzip` command |")
    print("| --- | ---: | ---: | ---: |")
    for name, speed, ratio in results:
        vs = f"{speed / reference:.1f}×" if reference else "n/a"
        print(f"| {name} | {speed:.0f} | {ratio:.3f} | {vs} |")


if __name__ == "__main__":
    main()
