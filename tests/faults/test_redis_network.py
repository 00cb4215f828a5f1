"""Scenario 2b: the network between s3pod and Redis misbehaves — latency, resets, cuts, silence.

Two daemons share the queue: one reaches Redis through the TCP fault proxy, the other
directly. The proxied one sees latency, every connection reset, connections cut a few
hundred bytes into a command or reply, and finally a silence longer than the heartbeat
timeout, during which the other daemon takes its jobs over. Afterwards every job must be
stored and verified, no file deleted twice or without its object.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from faultproxy import TcpFaultProxy
from scenario import LONG, Figures, MiB, Stream, mixed_files, scale

from s3po_client import enqueue_many
from s3po_client.transfer import TransferEngine

pytestmark = LONG

VARIANTS = list(range(1, scale(1, 3) + 1))


@pytest.mark.parametrize("seed", VARIANTS)
def test_a_bad_network_to_redis_loses_nothing(
    seed, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    specs = mixed_files(
        tmp_path / "files",
        rng,
        small=scale(150, 300),
        multipart=scale(2, 6),
        gzip=1,
        zstd=1,
        multipart_bytes=24 * MiB,
        compressed_bytes=20 * MiB,
    )
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.1, times=None)  # keeps work in flight
    with TcpFaultProxy(redis_server.port) as net:
        started = time.monotonic()
        enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
        common = ("--concurrency", "2", "--heartbeat-timeout", "3")
        proxied = Stream(start_daemon, *common, env={"S3POD_REDIS_URL": net.url, "S3POD_ENDPOINT_URL": fault_proxy.url})
        direct = Stream(start_daemon, *common, env={"S3POD_ENDPOINT_URL": fault_proxy.url})
        proxied.start()
        direct.start()
        proxied.wait_ready()
        direct.wait_ready()
        time.sleep(rng.uniform(1.0, 2.0))
        net.silence(True)  # longer than the heartbeat timeout: the direct daemon reaps the proxied one
        time.sleep(5.0)
        net.silence(False)
        time.sleep(rng.uniform(0.5, 1.5))
        net.latency_s = 0.05
        time.sleep(rng.uniform(1.0, 2.0))
        net.latency_s = 0.0
        resets = net.reset_all()
        time.sleep(rng.uniform(0.5, 1.5))
        net.cut_after(rng.randint(50, 2000), times=3)
        both = Stream(start_daemon)
        both.daemons = proxied.daemons + direct.daemons
        both.alive = list(both.daemons)
        both.wait_settled(redis_client, specs, timeout_s=scale(180, 600))
        both.peak_kib = max(proxied.peak_kib, direct.peak_kib)
        both.sample()
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures(
            "2b. Redis network faults", f"seed {seed}: {len(specs)} jobs, latency, resets, cuts, 5 s silence"
        )
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=redis_client, specs=specs, logs=both.logs)
    finally:
        engine.close()
    figures.crashes = sum(1 for d in both.daemons if d.proc.poll() is not None)
    figures.peak_rss_mib = round(both.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    deletions = Counter(re.findall(r"deleted job=([0-9a-f]+) ", "\n".join(both.logs)))
    figures.extra.update(
        connections=net.connections,
        resets=net.resets,
        reset_all=resets,
        reaped="reaped worker" in "\n".join(both.logs),
        deleted_twice=sum(1 for n in deletions.values() if n > 1),
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(specs) and figures.dead == 0, figures
    assert figures.extra["deleted_twice"] == 0
    assert net.resets >= 2, "the cuts and resets happened"
    assert figures.extra["reaped"], "the silence outlasted the heartbeat: the other daemon took the jobs over"
