"""Scenario 3: the store misbehaves — 500/503/SlowDown for a while, resets mid-part, a corrupted
body, a wrong ETag, a stall past the read timeout — under a stream of mixed jobs.

The fault proxy sits between s3pod and the store. Every fault is transient, so every job
must end stored and verified: the part or request is retried alone, or the job's attempt
is scheduled again. No file may be deleted whose object is not verified.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from scenario import FULL, LONG, Figures, MiB, Stream, mixed_files, orphaned_uploads, scale, write_file

from s3po_client import enqueue_many
from s3po_client.settings import TransferSettings
from s3po_client.transfer import TransferEngine

pytestmark = LONG

N = scale(12, 40)  # how many requests each fault spoils

VARIANTS: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
    ("503 SlowDown", [("error", dict(method="PUT", status=503, code="SlowDown", times=N))]),
    (
        "500 InternalError, complete too",
        [
            ("error", dict(method="PUT", status=500, code="InternalError", times=N)),
            ("error", dict(method="POST", query="uploadId", status=500, code="InternalError", times=2)),
        ],
    ),
    (
        "reset mid-part and mid-PUT",
        [("reset", dict(method="PUT", query="partNumber", times=N)), ("reset", dict(method="PUT", times=N // 2))],
    ),
    ("corrupted body", [("corrupt", dict(method="PUT", times=N))]),
    ("wrong ETag", [("etag", dict(method="PUT", times=N))]),
]
if FULL:  # the daemon's read timeout is 60 s: one stall costs a minute
    VARIANTS.append(
        ("stall past the 60 s read timeout", [("delay", dict(method="PUT", query="partNumber", delay_s=65.0, times=1))])
    )


@pytest.mark.parametrize("name,rules", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_a_misbehaving_store_loses_nothing(
    name, rules, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(name)
    specs = mixed_files(
        tmp_path / "files",
        rng,
        small=scale(30, 150),
        multipart=scale(2, 6),
        gzip=1,
        zstd=scale(0, 1),
        multipart_bytes=24 * MiB,
        compressed_bytes=20 * MiB,
    )
    added = [fault_proxy.add_rule(action, **options) for action, options in rules]
    started = time.monotonic()
    enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
    stream = Stream(start_daemon, "--concurrency", "3", env={"S3POD_ENDPOINT_URL": fault_proxy.url})
    stream.start()
    stream.wait_settled(redis_client, specs, timeout_s=scale(180, 600))
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures("3. S3 faults", f"{name}: {len(specs)} jobs")
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=specs, logs=stream.logs)
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    stream.sample()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    figures.extra.update(
        faults_injected=sum(r.hits for r in added), job_retries=sum(log.count(" retry job=") for log in stream.logs)
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(specs) and figures.dead == 0, figures
    assert figures.extra["faults_injected"] >= 1


def test_a_stall_past_the_read_timeout_is_retried(s3_settings, bucket, s3, fault_proxy, tmp_path: Path) -> None:
    """The short version of the stall: the engine with a 6 s read timeout, one part held for 15 s (a loaded machine needs seconds per part)."""
    from dataclasses import replace

    path = tmp_path / "big.bin"
    md5 = write_file(path, 24 * MiB, random.Random(7))
    stall = fault_proxy.add_rule("delay", method="PUT", query="partNumber", delay_s=15.0, times=1)
    engine = TransferEngine(replace(s3_settings, endpoint_url=fault_proxy.url), TransferSettings(read_timeout_s=6.0))
    try:
        result = engine.upload_file(bucket, "big.bin", path)
        assert result and result.bytes_sent == 24 * MiB
    finally:
        engine.close()
    import hashlib

    assert hashlib.md5(s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()).hexdigest() == md5
    assert stall.hits == 1
    assert orphaned_uploads(s3, bucket) == []
