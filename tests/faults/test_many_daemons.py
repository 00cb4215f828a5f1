"""Scenario 4: several daemons on one queue — one killed again and again, one paused past its heartbeat.

With two or four daemons sharing the queue, one of them is SIGKILLed at random moments and
replaced each time. Then a daemon is paused (SIGSTOP) in the middle of its uploads for longer
than the heartbeat timeout, so another takes its jobs over; one of the files it held is
rewritten meanwhile; then it is resumed (SIGCONT). Nothing may be lost, no file deleted
twice, and no object may come from a file that changed under its upload: the stored object
is the file's last version.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import wait_until
from scenario import FULL, KEYS, LONG, Figures, MiB, Stream, mixed_files, scale, settled, write_file

from s3po_client import enqueue_many
from s3po_client.admin import count_jobs
from s3po_client.transfer import TransferEngine

pytestmark = LONG

KILL_VARIANTS = [(daemons, seed) for daemons in (2, 4) for seed in (1, 2)] if FULL else [(4, 1)]


def deletions_twice(logs: list[str]) -> int:
    counts = Counter(re.findall(r"deleted job=([0-9a-f]+) ", "\n".join(logs)))
    return sum(1 for n in counts.values() if n > 1)


def finish(stream: Stream, name: str, variant: str, *, s3_settings, s3, bucket, client, specs, started) -> Figures:
    engine = TransferEngine(s3_settings)
    try:
        figures = Figures(name, variant)
        figures.measure(engine=engine, s3=s3, bucket=bucket, client=client, specs=specs, logs=stream.logs)
    finally:
        engine.close()
    figures.crashes = stream.crashes()
    figures.peak_rss_mib = round(stream.peak_kib / 1024, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    figures.extra.update(kills=stream.kills, deleted_twice=deletions_twice(stream.logs))
    return figures


@pytest.mark.parametrize("daemons,seed", KILL_VARIANTS, ids=[f"{d}daemons-{s}" for d, s in KILL_VARIANTS])
def test_one_of_several_daemons_killed_again_and_again(
    daemons, seed, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(seed * 10 + daemons)
    specs = mixed_files(
        tmp_path / "files",
        rng,
        small=scale(40, 300),
        multipart=scale(3, 8),
        gzip=scale(1, 2),
        zstd=scale(1, 2),
        multipart_bytes=24 * MiB,
        compressed_bytes=20 * MiB,
    )
    started = time.monotonic()
    enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.05, times=None)
    stream = Stream(
        start_daemon, "--concurrency", "2", "--heartbeat-timeout", "1", env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    for _ in range(daemons):
        stream.start()
    for _ in range(scale(3, 8)):
        time.sleep(rng.uniform(0.8, 2.5))
        if settled(redis_client):
            break
        stream.kill(0)  # the same slot each time: the victim is always the newest replacement
    stream.wait_settled(redis_client, specs, timeout_s=scale(180, 900))
    figures = finish(
        stream,
        "4. Several daemons, one killed",
        f"{daemons} daemons, seed {seed}: {len(specs)} jobs",
        s3_settings=s3_settings,
        s3=s3,
        bucket=bucket,
        client=redis_client,
        specs=specs,
        started=started,
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(specs) and figures.dead == 0, figures
    assert figures.extra["deleted_twice"] == 0


PAUSE_VARIANTS = list(range(1, scale(1, 3) + 1))


@pytest.mark.parametrize("seed", PAUSE_VARIANTS)
def test_a_paused_daemon_is_taken_over_and_a_file_rewritten_meanwhile_is_stored_as_its_last_version(
    seed, redis_server, redis_client, s3, bucket, s3_settings, start_daemon, fault_proxy, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    specs = mixed_files(
        tmp_path / "files", rng, small=scale(20, 100), multipart=scale(4, 8), gzip=0, zstd=0, multipart_bytes=24 * MiB
    )
    by_key = {s.key: s for s in specs}
    started = time.monotonic()
    fault_proxy.add_rule("delay", method="PUT", delay_s=0.2, times=None)
    paused = Stream(
        start_daemon, "--concurrency", "2", "--heartbeat-timeout", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    victim = paused.start()
    paused.wait_ready()
    worker = re.search(r"worker=(\S+) redis=", victim.log).group(1)
    enqueue_many([s.job(bucket) for s in specs], redis_url=redis_server.url)
    wait_until(lambda: count_jobs(redis_client).processing_by_worker.get(worker, 0) >= 2, message="jobs in hand")
    victim.signal(signal.SIGSTOP)
    held = [json.loads(raw)["key"] for raw in redis_client.lrange(KEYS.processing(worker), 0, -1)]
    rescuer = Stream(
        start_daemon, "--concurrency", "2", "--heartbeat-timeout", "2", env={"S3POD_ENDPOINT_URL": fault_proxy.url}
    )
    rescuer.start()
    rewritten = []
    try:
        wait_until(
            lambda: "reaped worker " + worker in rescuer.daemons[0].log,
            timeout_s=60,
            message="the paused daemon's jobs taken over",
        )
        for key in held:  # a new version of each held file, put in place atomically
            spec = by_key[key]
            if spec.path.exists():
                new = spec.path.with_suffix(".new")
                spec.md5 = write_file(new, spec.size, random.Random(seed + 100))
                os.replace(new, spec.path)
                rewritten.append(key)
        time.sleep(rng.uniform(0.5, 2.0))
    finally:
        victim.signal(signal.SIGCONT)
    both = Stream(start_daemon)
    both.daemons = paused.daemons + rescuer.daemons
    both.alive = list(both.daemons)
    both.wait_settled(redis_client, specs, timeout_s=scale(180, 600))
    both.sample()
    figures = finish(
        both,
        "4. Paused daemon taken over",
        f"seed {seed}: {len(specs)} jobs, {len(held)} held, {len(rewritten)} rewritten while paused",
        s3_settings=s3_settings,
        s3=s3,
        bucket=bucket,
        client=redis_client,
        specs=specs,
        started=started,
    )
    figures.extra.update(
        held=len(held), rewritten=len(rewritten), source_changed=sum(log.count("changed") for log in both.logs)
    )
    figures.record()
    figures.assert_nothing_lost()
    assert figures.verified == len(specs) and figures.dead == 0, figures  # each object is the last version
    assert figures.extra["deleted_twice"] == 0
    assert victim.proc.poll() is None, "the resumed daemon runs on"
