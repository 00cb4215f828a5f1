"""Scenario 2: redis-server restarted under a stream of mixed jobs, while a producer keeps enqueueing.

Three ways: SIGTERM (Redis writes its AOF and exits), SIGKILL with ``appendfsync always``
(every write is on disk before Redis answers), SIGKILL with ``appendfsync everysec`` (the
documented loss window: up to a second of writes not yet fsynced). A producer thread
enqueues in small batches throughout and retries while Redis is down; every job Redis
acknowledged to it must end verified on the store or dead-lettered with a reason.

A SIGKILL loses only what the process held, not what it handed the kernel: with
``everysec`` the written-but-unsynced tail survives a killed redis-server, and is lost only
when the machine itself stops (power, kernel). That cannot be caused from a test; the
figure below counts what a SIGKILL loses, and docs/RELIABILITY.md says the rest.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from scenario import FULL, LONG, Figures, MiB, Stream, mixed_files, scale
from servers import RedisServer

from s3po_client import enqueue_many
from s3po_client.errors import ConfigError
from s3po_client.transfer import TransferEngine

pytestmark = LONG

MODES = [("SIGTERM", "always"), ("SIGKILL", "always"), ("SIGKILL", "everysec")]
#: ``make test`` runs the mode with the loss window; ``make test-faults`` every mode, three times.
VARIANTS = (
    [(sig, fsync, seed) for seed in range(1, 3) for sig, fsync in MODES] if FULL else [("SIGKILL", "everysec", 1)]
)


class Producer(threading.Thread):
    """Enqueues the scenario's jobs in batches of ten, retrying each batch until Redis takes it."""

    def __init__(self, jobs: list[dict], url: str, pause_s: float) -> None:
        super().__init__(daemon=True)
        self.jobs, self.url, self.pause_s = jobs, url, pause_s
        self.refused = 0

    def run(self) -> None:
        for i in range(0, len(self.jobs), 10):
            while True:
                try:
                    enqueue_many(self.jobs[i : i + 10], redis_url=self.url)
                    break
                except ConfigError:
                    self.refused += 1
                    time.sleep(0.1)
            time.sleep(self.pause_s)


@pytest.mark.parametrize("sig,fsync,seed", VARIANTS, ids=[f"{s}-{f}-{n}" for s, f, n in VARIANTS])
def test_redis_restarts_under_a_stream_lose_no_acknowledged_job(
    sig, fsync, seed, s3, bucket, s3_settings, start_daemon, fault_proxy, daemon_env, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    server = RedisServer(appendonly=True, appendfsync=fsync).start()
    client = redis.Redis.from_url(server.url)
    try:
        specs = mixed_files(
            tmp_path / "files",
            rng,
            small=scale(60, 300),
            multipart=scale(2, 6),
            gzip=scale(1, 3),
            zstd=scale(1, 3),
            multipart_bytes=24 * MiB,
            compressed_bytes=20 * MiB,
        )
        started = time.monotonic()
        fault_proxy.add_rule("delay", method="PUT", delay_s=0.02, times=None)
        stream = Stream(
            start_daemon,
            "--concurrency",
            "3",
            "--heartbeat-timeout",
            "2",
            env={"S3POD_REDIS_URL": server.url, "S3PO_REDIS_URL": server.url, "S3POD_ENDPOINT_URL": fault_proxy.url},
        )
        stream.start()
        producer = Producer([s.job(bucket) for s in specs], server.url, pause_s=scale(0.05, 0.02))
        producer.start()
        restarts = scale(2, 4)
        for _ in range(restarts):
            time.sleep(rng.uniform(0.5, 2.0))
            server.restart(down_s=rng.uniform(0.2, 1.5), sig=getattr(signal, sig))
        producer.join(120)
        assert not producer.is_alive()
        stream.wait_settled(client, specs, timeout_s=scale(180, 900))
        engine = TransferEngine(s3_settings)
        try:
            figures = Figures(
                "2. Redis restart", f"{sig}, appendfsync {fsync}, seed {seed}: {len(specs)} jobs, {restarts} restarts"
            )
            figures.measure(engine=engine, s3=s3, bucket=bucket, client=client, specs=specs, logs=stream.logs)
        finally:
            engine.close()
        figures.crashes = stream.crashes()
        figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
        figures.seconds = round(time.monotonic() - started, 1)
        figures.extra.update(restarts=restarts, enqueue_refusals=producer.refused)
        figures.record()
        figures.assert_nothing_lost()
        assert figures.verified == len(specs), figures
        assert all(d.proc.poll() is None for d in stream.alive), "the daemon outlived every restart"
    finally:
        client.close()
        server.close()
