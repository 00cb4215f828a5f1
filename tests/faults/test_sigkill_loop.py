"""Scenario 1: SIGKILL s3pod at random moments during a stream of mixed jobs, restarting it each time.

The stream mixes small files, multipart ones and gzip/zstd ones (multipart-sized too); the
store is slowed a little so that kills land in the middle of uploads. Afterwards every
object is downloaded and compared with its file, and the store must hold no multipart
upload: each one a kill cut short was resumed or aborted by the next daemon.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scenario import FULL, LONG, Figures, MiB, Stream, mixed_files, scale, stored_keys

from s3po_client import enqueue_many
from s3po_client.transfer import TransferEngine

pytestmark = LONG

THRESHOLD = 16 * MiB  # the daemon's multipart threshold (TransferSettings' default)

VARIANTS = list(range(1, scale(1, 3) + 1))


def abandon_reasons(logs: list[str]) -> dict[str, int]:
    """Why uploads a kill left were aborted rather than resumed, counted from the logs."""
    return dict(Counter(re.findall(r"multipart abandoned .* reason=(.*)", "\n".join(logs))))


@pytest.mark.parametrize("seed", VARIANTS)
def test_sigkill_at_random_moments_loses_nothing_and_leaves_no_upload(
    seed, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    specs = mixed_files(
        tmp_path / "files",
        rng,
        small=scale(40, 880),
        multipart=scale(5, 40),
        gzip=scale(2, 10),
        zstd=scale(2, 10),
        multipart_bytes=24 * MiB,
        compressed_bytes=20 * MiB,
    )
    started = time.monotonic()
    enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
    # Each part waits a little on its way: uploads last long enough to be cut in the middle.
    fault_proxy.add_rule("delay", method="PUT", query="partNumber", delay_s=0.15, times=None)
    stream = Stream(
        start_daemon, "--heartbeat-timeout", "1", "--concurrency", "3", env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    stream.start()
    kills = scale(5, 20)
    from scenario import settled

    for _ in range(kills):
        time.sleep(rng.uniform(0.8, 3.0))  # a daemon needs about a second to start working
        if settled(redis_client):
            break
        stream.kill()
    stream.wait_settled(redis_client, specs, timeout_s=scale(180, 1200))

    engine = TransferEngine(s3_settings)
    try:
        figures = Figures("1. SIGKILL loop", f"seed {seed}: {len(specs)} mixed jobs, {stream.kills} kills")
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=specs, logs=stream.logs)
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    multipart_stored = sum(
        s3.head_object(Bucket=bucket, Key=k)["ContentLength"]
        for k in stored_keys(s3, bucket)
        if s3.head_object(Bucket=bucket, Key=k)["ContentLength"] >= THRESHOLD
    )
    part_bytes = fault_proxy.bytes_forwarded("PUT", "partNumber")
    resent = part_bytes - multipart_stored
    figures.extra.update(
        kills=stream.kills,
        multipart_bytes_stored=multipart_stored,
        part_bytes_sent=part_bytes,
        part_bytes_resent=resent,
        parts_resent_per_kill=round(resent / (8 * MiB) / max(1, stream.kills), 2),
        resumed=sum(log.count("multipart resumed") for log in stream.logs),
        abandoned=abandon_reasons(stream.logs),
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(specs) and figures.dead == 0, figures
    assert stream.kills >= 1
    # A kill costs the parts in flight (3 jobs × 4 parts at most), never whole files again.
    assert resent <= stream.kills * 3 * 4 * 8 * MiB, figures
