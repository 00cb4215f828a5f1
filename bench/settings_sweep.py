"""Which transfer defaults are fastest here: one large upload at each setting, interleaved, as ratios.

Starts the benchmark's servers (``rig.Rig``), then uploads one file of random bytes through
``TransferEngine.upload_file`` with each setting given, round after round, each round
starting one setting further (A B C, B C A, ...), and boto3's ``upload_file`` beside them
for scale. Reports, per setting, the median time, the median ratio to the first setting in
the same round (above 1: faster than the first), and the client CPU seconds. The default
settings of ``TransferSettings`` are the ones this run chose; docs/BENCHMARKS.md keeps its
table.

    .venv/bin/python bench/settings_sweep.py                  # the sweep docs/BENCHMARKS.md shows
    .venv/bin/python bench/settings_sweep.py --mib 256 --rounds 3 \\
        --settings 'defaults;max_concurrency=8;part_size_bytes=16MiB'
    .venv/bin/python bench/settings_sweep.py --far    # the store 20 ms away (bench/delay.py)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import data
from rig import BUCKET, Rig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from servers import REGION  # noqa: E402

from s3po_client.settings import S3Settings, TransferSettings  # noqa: E402
from s3po_client.transfer.engine import TransferEngine  # noqa: E402

SETTINGS = (
    "defaults;checksum=md5;max_concurrency=2;max_concurrency=6;max_concurrency=8;"
    "part_size_bytes=16MiB;part_size_bytes=16MiB,max_concurrency=8;part_size_bytes=32MiB"
)


def parse(spec: str) -> dict[str, Any]:
    """``"part_size_bytes=16MiB,max_concurrency=8"`` → keyword arguments for TransferSettings."""
    if spec == "defaults":
        return {}
    out: dict[str, Any] = {}
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if value.endswith("MiB"):
            out[name] = int(value[:-3]) << 20
        elif value.isdigit():
            out[name] = int(value)
        else:
            out[name] = value
    return out


def boto3_client(rig: Rig, url: str) -> Any:
    """boto3 at its defaults against ``url`` (the loopback port, or the delay proxy's)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=rig.s3.access_key,
        aws_secret_access_key=rig.s3.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the file's size (default 1 GiB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settings", default=SETTINGS, help="settings to compare, ';'-separated")
    parser.add_argument("--far", action="store_true", help="the store 20 ms round trip away, as in the far cases")
    args = parser.parse_args()
    specs = [s.strip() for s in args.settings.split(";") if s.strip()]
    rig = Rig()
    try:
        path = data.random_file(rig.work / "sweep.bin", args.mib << 20)
        endpoint = rig.far()[0] if args.far else rig.http
        s3 = S3Settings(
            endpoint_url=endpoint.url, access_id=rig.s3.access_key, secret_key=rig.s3.secret_key, region=REGION
        )
        peer = boto3_client(rig, endpoint.url)
        engines = {spec: TransferEngine(s3, TransferSettings(**parse(spec))) for spec in specs}
        contenders = [*specs, "boto3 upload_file"]
        results: dict[str, list[tuple[float, float]]] = {c: [] for c in contenders}
        load_before = os.getloadavg()[0]
        for r in range(args.rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for name in order:
                key = f"sweep/{r}/{len(results[name])}"
                started, cpu = time.monotonic(), os.times()
                if name in engines:
                    engines[name].upload_file(BUCKET, key, path)
                else:
                    peer.upload_file(str(path), BUCKET, key)
                after = os.times()
                seconds = time.monotonic() - started
                results[name].append((seconds, after.user - cpu.user + after.system - cpu.system))
                print(f"  round {r + 1}/{args.rounds}  {name:45s} {seconds:7.3f} s", flush=True)
                rig.clear("sweep/")
        print(
            f"\n{args.mib} MiB, {args.rounds} rounds, {'20 ms round trip, ' if args.far else ''}load average {load_before:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after\n"
        )
        print("| setting | median s | speed vs defaults (same round) | CPU s |")
        print("| --- | ---: | ---: | ---: |")
        first = results[contenders[0]]
        for name in contenders:
            rows = results[name]
            ratio = statistics.median(f[0] / x[0] for f, x in zip(first, rows))
            print(
                f"| {name} | {statistics.median(x[0] for x in rows):.3f} | {ratio:.2f}× | "
                f"{statistics.median(x[1] for x in rows):.2f} |"
            )
        for engine in engines.values():
            engine.close()
    finally:
        rig.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
