"""Prometheus metrics: counters moved by outcomes, queue gauges read from a real Redis, scraped over HTTP."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry
from servers import free_port

from s3po_client.job import Job
from s3po_client.keys import QueueKeys
from s3pod.events import Outcome, OutcomeKind
from s3pod.service.metrics import Metrics, MetricsServer


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample on /metrics as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def metrics() -> Iterator[tuple[Metrics, MetricsServer]]:
    m = Metrics()
    server = MetricsServer(m.registry, "127.0.0.1", 0)
    yield m, server
    server.close()


def outcome(kind: OutcomeKind, bytes_sent: int = 0, duration_s: float = 0.0) -> Outcome:
    return Outcome(kind, "j1", "b", "k", bytes_sent=bytes_sent, duration_s=duration_s, attempt=0)


def test_counters_move_with_outcomes(metrics: tuple[Metrics, MetricsServer]) -> None:
    m, server = metrics
    before = scrape(server.port)
    for kind in OutcomeKind:  # all exported at zero before anything happened
        assert before[("s3pod_jobs_total", (("outcome", kind.value),))] == 0
    m.on_outcome(outcome(OutcomeKind.UPLOADED, bytes_sent=1000, duration_s=0.2))
    m.on_outcome(outcome(OutcomeKind.UPLOADED, bytes_sent=24, duration_s=3.0))
    m.on_outcome(outcome(OutcomeKind.RETRY))
    m.on_outcome(outcome(OutcomeKind.DEAD))
    m.on_outcome(outcome(OutcomeKind.INVALID))
    after = scrape(server.port)
    assert after[("s3pod_jobs_total", (("outcome", "uploaded"),))] == 2
    assert after[("s3pod_jobs_total", (("outcome", "retry"),))] == 1
    assert after[("s3pod_jobs_total", (("outcome", "dead"),))] == 1
    assert after[("s3pod_jobs_total", (("outcome", "invalid"),))] == 1
    assert after[("s3pod_uploaded_bytes_total", ())] == 1024
    assert after[("s3pod_retries_total", ())] == 1
    assert after[("s3pod_upload_duration_seconds_count", ())] == 2
    assert after[("s3pod_upload_duration_seconds_sum", ())] == pytest.approx(3.2)
    assert after[("s3pod_upload_duration_seconds_bucket", (("le", "0.25"),))] == 1
    assert after[("s3pod_upload_duration_seconds_bucket", (("le", "5.0"),))] == 2


def test_queue_gauges_read_redis_at_scrape_time(
    metrics: tuple[Metrics, MetricsServer], redis_client: redis.Redis
) -> None:
    m, server = metrics
    m.watch_queue(redis_client, "s3po", worker_ttl_s=30)
    keys = QueueKeys("s3po")
    job = Job(bucket="b", key="k", path="/tmp/x").to_json()
    redis_client.lpush(keys.queue, job, job, job)
    redis_client.lpush(keys.processing("w1"), job)
    redis_client.lpush(keys.processing("w2"), job, job)
    redis_client.zadd(keys.delayed, {job: time.time() + 60})
    redis_client.lpush(keys.dead, job, job, job, job)
    now = time.time()
    redis_client.zadd(keys.workers, {"w1": now, "w2": now - 5, "gone": now - 300})
    redis_client.lpush(QueueKeys("other").queue, job)  # another prefix: not ours to count
    samples = scrape(server.port)
    depth = {
        state: samples[("s3pod_queue_jobs", (("state", state),))]
        for state in ("pending", "processing", "delayed", "dead")
    }
    assert depth == {"pending": 3, "processing": 3, "delayed": 1, "dead": 4}
    assert samples[("s3pod_workers_alive", ())] == 2
    assert samples[("s3pod_redis_up", ())] == 1
    # Read at scrape time: the next scrape sees the queue as it is then.
    redis_client.delete(keys.queue)
    assert scrape(server.port)[("s3pod_queue_jobs", (("state", "pending"),))] == 0


def test_a_scrape_still_answers_when_redis_is_down(metrics: tuple[Metrics, MetricsServer]) -> None:
    m, server = metrics
    m.watch_queue(redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)))
    m.on_outcome(outcome(OutcomeKind.UPLOADED, bytes_sent=5))
    samples = scrape(server.port)
    assert samples[("s3pod_redis_up", ())] == 0
    assert samples[("s3pod_uploaded_bytes_total", ())] == 5  # the worker's own counters still there
    assert not any(name == "s3pod_queue_jobs" for name, _ in samples)


def test_two_instances_in_one_process_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.on_outcome(outcome(OutcomeKind.RETRY))
    assert a.registry.get_sample_value("s3pod_retries_total") == 1
    assert b.registry.get_sample_value("s3pod_retries_total") == 0


def test_close_frees_the_port() -> None:
    m = Metrics()
    port = free_port()
    MetricsServer(m.registry, "127.0.0.1", port).close()
    MetricsServer(m.registry, "127.0.0.1", port).close()  # would raise EADDRINUSE if still bound


def test_workers_alive_judges_heartbeats_by_the_redis_clock(redis_server, daemon_env, tmp_path) -> None:
    """A daemon whose host clock runs an hour ahead still counts itself alive.

    Heartbeats are scored with Redis's clock; judging them with the host's clock made every
    worker of a skewed host look an hour dead. ``faketime`` (Debian's package, installed by
    scripts/install-system-deps) shifts the daemon's clock.
    """
    import subprocess
    import sys

    from conftest import wait_until

    # The library itself (not the ``faketime`` wrapper, which would stand between this test
    # and the daemon's pid), from Debian's libfaketime, installed by scripts/install-system-deps.
    lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    assert os.path.exists(lib), "libfaketime is installed by scripts/install-system-deps"
    port = free_port()
    env = {**daemon_env, "LD_PRELOAD": lib, "FAKETIME": "+1h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    log = tmp_path / "skewed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "s3pod", "--metrics-listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in log.read_text(errors="replace"), message="the skewed daemon ready")
        assert scrape(port)[("s3pod_workers_alive", ())] == 1
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_bandwidth_limit_and_the_bytes_moved_are_read_at_scrape_time(
    metrics: tuple[Metrics, MetricsServer],
) -> None:
    from s3po_client.transfer.bandwidth import Limiter, Rates, parse_bwlimit

    m, server = metrics
    limiter = Limiter(parse_bwlimit("2M:off"))
    m.watch_bandwidth(limiter)
    limiter.up.take(1000)
    limiter.down.body(b"x" * 24)
    limiter.down.count(100)
    got = scrape(server.port)
    assert got[("s3pod_bwlimit_bytes_per_second", (("direction", "up"),))] == 2 * 1024 * 1024
    assert got[("s3pod_bwlimit_bytes_per_second", (("direction", "down"),))] == 0
    assert got[("s3pod_transferred_bytes_total", (("direction", "up"),))] == 1000
    assert got[("s3pod_transferred_bytes_total", (("direction", "down"),))] == 124
    limiter.set_rate(Rates(None, 1024 * 1024))
    got = scrape(server.port)
    assert got[("s3pod_bwlimit_bytes_per_second", (("direction", "up"),))] == 0
    assert got[("s3pod_bwlimit_bytes_per_second", (("direction", "down"),))] == 1024 * 1024
