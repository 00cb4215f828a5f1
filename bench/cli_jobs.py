"""How many files ``s3po upload`` should send at once: wall time of a tree upload for each ``--jobs``.

Runs the real command against a SeaweedFS of its own on loopback, directly and through
a proxy that adds a fixed delay to every request (a store some milliseconds away, as a
real one is). Prints one Markdown table; the default of ``--jobs`` (options.DEFAULT_JOBS)
is chosen from it::

    .venv/bin/python bench/cli_jobs.py [--jobs 1,2,4,8,16] [--delay-ms 20] [--repeat 3] [--cases small,large]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from faultproxy import FaultProxy  # noqa: E402
from servers import REGION, S3Server  # noqa: E402

MiB = 1024 * 1024


def make_tree(root: Path, count: int, size: int) -> None:
    root.mkdir(parents=True)
    for i in range(count):
        (root / f"d{i % 10}").mkdir(exist_ok=True)
        (root / f"d{i % 10}" / f"f{i}.bin").write_bytes(os.urandom(size))


def timed_upload(tree: Path, url: str, jobs: int, env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "s3po_client.cli", "upload", "--keep", "--quiet", "-j", str(jobs), str(tree), url],
        env=env,
        check=True,
    )
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default="1,2,4,8,16")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay per request through the proxy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="small,large", help="small (300 × 64 KiB), large (8 × 32 MiB)")
    args = parser.parse_args()
    levels = [int(j) for j in args.jobs.split(",")]
    server = S3Server().start()
    client = server.client()
    known = {"small": ("300 files of 64 KiB", 300, 64 * 1024), "large": ("8 files of 32 MiB", 8, 32 * MiB)}
    cases = {known[c][0]: known[c][1:] for c in args.cases.split(",")}
    base_env = {
        **os.environ,
        "S3PO_REGION": REGION,
        "S3PO_ACCESS_ID": server.access_key,
        "S3PO_SECRET_KEY": server.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp, FaultProxy(server.port) as proxy:
            proxy.add_rule("delay", times=None, delay_s=args.delay_ms / 1000)
            for name, (count, size) in cases.items():
                tree = Path(tmp) / name.replace(" ", "-")
                make_tree(tree, count, size)
                for where, endpoint in (("loopback", server.url), (f"+{args.delay_ms:g} ms", proxy.url)):
                    env = {**base_env, "S3PO_ENDPOINT_URL": endpoint}
                    times = {}
                    for jobs in levels:
                        runs = []
                        for _ in range(args.repeat):
                            bucket = f"b-{uuid.uuid4().hex[:12]}"
                            client.create_bucket(Bucket=bucket)
                            runs.append(timed_upload(tree, f"s3://{bucket}/t/", jobs, env))
                            client.delete_bucket(Bucket=bucket)
                        times[jobs] = statistics.median(runs)
                    rows.append((name, where, times))
                    print(name, where, {j: round(t, 2) for j, t in times.items()}, file=sys.stderr, flush=True)
    finally:
        server.close()
    print(f"| tree | store | {' | '.join(f'-j {j}' for j in levels)} |")
    print(f"| --- | --- | {' | '.join('---' for _ in levels)} |")
    for name, where, times in rows:
        print(f"| {name} | {where} | {' | '.join(f'{times[j]:.2f} s' for j in levels)} |")


if __name__ == "__main__":
    main()
