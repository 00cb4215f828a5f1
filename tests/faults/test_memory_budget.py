"""Scenario 9: the memory budget under 20 parallel multipart jobs on a slow store.

One daemon with 20 job threads and ``--max-memory`` gets 20 multipart jobs at once while
every part takes its time to be stored. Its peak resident set (VmHWM, read from /proc)
must stay within the budget plus what the process holds idle (Python, boto3): large
uploads wait for room rather than pile up in memory.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from scenario import FULL, LONG, Figures, MiB, Spec, Stream, peak_rss_kib, scale, write_file

from s3po_client import enqueue_many
from s3po_client.transfer import TransferEngine

pytestmark = LONG

#: what the daemon holds before its first job (Python, boto3, redis-py): measured, with slack
IDLE_ALLOWANCE_MIB = 130

VARIANTS = [(128, None), (256, None), (256, "gzip"), (512, "zstd")] if FULL else [(128, None)]


@pytest.mark.parametrize("budget_mib,codec", VARIANTS, ids=[f"{b}MiB-{c or 'plain'}" for b, c in VARIANTS])
def test_twenty_parallel_multipart_jobs_stay_within_the_memory_budget(
    budget_mib, codec, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(budget_mib)
    size = scale(17, 40) * MiB  # 17 MiB: three parts, multipart all the same
    specs = []
    for i in range(20):
        path = tmp_path / f"big-{i:02d}.bin"
        specs.append(Spec(path.name, path, write_file(path, size, rng), size, compress=codec))
    fault_proxy.add_rule("delay", method="PUT", query="partNumber", delay_s=scale(10, 30) / 100, times=None)
    stream = Stream(
        start_daemon,
        "--concurrency",
        "20",
        "--max-memory",
        str(budget_mib),
        env={"S3POD_ENDPOINT_URL": fault_proxy.url},
    )
    daemon = stream.start()
    stream.wait_ready()
    idle_mib = peak_rss_kib(daemon.proc.pid) / 1024
    started = time.monotonic()
    enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
    stream.wait_settled(redis_client, specs, timeout_s=scale(300, 900))
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures(
            "9. Memory budget",
            f"20 parallel {size // MiB} MiB {codec or 'plain'} multipart jobs, --max-memory {budget_mib}",
        )
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=specs, logs=stream.logs)
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    figures.extra.update(
        idle_rss_mib=round(idle_mib, 1), budget_mib=budget_mib, over_idle_mib=round(figures.peak_rss_mib - idle_mib, 1)
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == 20 and figures.dead == 0, figures
    assert figures.peak_rss_mib <= budget_mib + IDLE_ALLOWANCE_MIB, figures
