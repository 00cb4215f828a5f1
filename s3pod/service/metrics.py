"""Prometheus metrics: what the worker did (counters fed by outcomes) and what Redis holds now.

Exposed with ``--metrics-listen HOST:PORT`` at ``/metrics``:

========================================== ========= ============================================================
name                                       type      meaning
========================================== ========= ============================================================
s3pod_jobs_total{outcome}                  counter   job attempts by outcome: uploaded, retry, dead, invalid
s3pod_uploaded_bytes_total                 counter   bytes sent to S3 by successful uploads
s3pod_upload_duration_seconds              histogram time of each successful upload
s3pod_retries_total                        counter   retries scheduled
s3pod_queue_jobs{state}                    gauge     jobs pending, processing, delayed, dead (read at scrape)
s3pod_workers_alive                        gauge     workers whose heartbeat is fresh (read at scrape)
s3pod_redis_up                             gauge     1 if the scrape could read Redis, else 0
s3pod_bwlimit_bytes_per_second             gauge     the bandwidth limit now, by direction (up, down); 0: off
s3pod_transferred_bytes_total              counter   body bytes sent (up) and received (down) as they go, retries
                                                     included: ``rate()`` of it is the bandwidth used
s3pod_destination_bwlimit_bytes_per_second gauge     the same two, by ``destination`` too, for each destination
                                                     with a limit of its own (whose bytes are counted there, not
                                                     above)
s3pod_destination_transferred_bytes_total  counter
s3pod_watch_files_queued_total             counter   files the spool watcher queued (one per version of a file)
s3pod_watch_rescans_total                  counter   full scans of the watched directories (start, overflow,
                                                     poll, reload)
s3pod_watch_overflows_total                counter   inotify queue overflows, each followed by a rescan
========================================== ========= ============================================================

Names follow https://prometheus.io/docs/practices/naming/ (base units, ``_total`` for
counters). The queue gauges are read from Redis when scraped, so every daemon sharing a
queue reports the same depths: aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from s3po_client.admin import count_jobs
from s3po_client.keys import DEFAULT_PREFIX

from ..events import Outcome, OutcomeKind

if TYPE_CHECKING:
    from s3po_client.transfer.bandwidth import Limiter

    from ..spool import WatchCounts

logger = logging.getLogger(__name__)

#: Upload durations from a small file on a LAN to a multi-GiB file over a slow link.
DURATION_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

#: A worker counts as alive if its heartbeat is younger than this.
DEFAULT_WORKER_TTL_S = 30.0


class Metrics:
    """The counters a worker moves; a Listener (``on_outcome``) for ``s3pod.events``.

    Each instance owns its registry, so two in one process (tests) do not collide.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs = Counter("s3pod_jobs", "Job attempts, by how they ended.", ["outcome"], registry=self.registry)
        for kind in OutcomeKind:  # export every outcome at 0 so rate() works from the start
            self.jobs.labels(outcome=kind.value)
        self.uploaded_bytes = Counter(
            "s3pod_uploaded_bytes", "Bytes sent to S3 by successful uploads.", registry=self.registry
        )
        self.upload_duration = Histogram(
            "s3pod_upload_duration_seconds",
            "Duration of each successful upload.",
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.retries = Counter("s3pod_retries", "Retries scheduled after a failed attempt.", registry=self.registry)

    def on_outcome(self, outcome: Outcome) -> None:
        """Count one job transition."""
        self.jobs.labels(outcome=outcome.kind.value).inc()
        if outcome.kind is OutcomeKind.UPLOADED:
            self.uploaded_bytes.inc(max(0, outcome.bytes_sent))
            self.upload_duration.observe(max(0.0, outcome.duration_s))
        elif outcome.kind is OutcomeKind.RETRY:
            self.retries.inc()

    def watch_queue(
        self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, worker_ttl_s: float = DEFAULT_WORKER_TTL_S
    ) -> None:
        """Also export the queue depths and live workers, read from Redis at each scrape."""
        self.registry.register(QueueCollector(client, prefix, worker_ttl_s))

    def watch_spool(self, counts: WatchCounts) -> None:
        """Also export what the spool watchers did, read from ``counts`` at each scrape."""
        self.registry.register(SpoolCollector(counts))

    def watch_bandwidth(self, limiter: Limiter, destinations: Mapping[str, Limiter] | None = None) -> None:
        """Also export the bandwidth limit and the bytes moved, read from ``limiter`` (and each of ``destinations``) at each scrape."""
        self.registry.register(BandwidthCollector(limiter, destinations or {}))


class SpoolCollector(Collector):
    """Reads the spool watchers' counts (files queued, rescans, overflows) when Prometheus scrapes."""

    def __init__(self, counts: WatchCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        for name, what, value in (
            ("files_queued", "Files the spool watcher queued, one per version of a file.", self.counts.files_queued),
            ("rescans", "Full scans of the watched directories.", self.counts.rescans),
            ("overflows", "inotify queue overflows, each followed by a rescan.", self.counts.overflows),
        ):
            yield CounterMetricFamily(f"s3pod_watch_{name}", what, value=value)


class BandwidthCollector(Collector):
    """Reads the bandwidth limits and byte counts (a ``Limiter``, and each destination's own) when Prometheus scrapes."""

    def __init__(self, limiter: Limiter, destinations: Mapping[str, Limiter] | None = None) -> None:
        self.limiter = limiter
        self.destinations = dict(destinations or {})

    def collect(self) -> Iterator[Metric]:
        yield from _bandwidth_families("s3pod", [], [((), self.limiter)])
        if self.destinations:
            yield from _bandwidth_families(
                "s3pod_destination", ["destination"], [((name,), lim) for name, lim in self.destinations.items()]
            )


def _bandwidth_families(
    prefix: str, labels: list[str], limiters: list[tuple[tuple[str, ...], Limiter]]
) -> Iterator[Metric]:
    """Yield the limit and bytes-moved families of ``limiters``, each labelled with its values and a direction."""
    limit = GaugeMetricFamily(
        f"{prefix}_bwlimit_bytes_per_second",
        "Bandwidth limit now, bytes per second (0: off).",
        labels=[*labels, "direction"],
    )
    moved = CounterMetricFamily(
        f"{prefix}_transferred_bytes",
        "Body bytes sent (up) and received (down), retries included.",
        labels=[*labels, "direction"],
    )
    for values, limiter in limiters:
        rates = limiter.rates
        for direction, rate, bucket in (("up", rates.up, limiter.up), ("down", rates.down, limiter.down)):
            limit.add_metric([*values, direction], rate or 0)
            moved.add_metric([*values, direction], bucket.bytes_total)
    yield limit
    yield moved


class QueueCollector(Collector):
    """Reads the queue's depths and the live workers from Redis when Prometheus scrapes."""

    def __init__(
        self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, worker_ttl_s: float = DEFAULT_WORKER_TTL_S
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.worker_ttl_s = worker_ttl_s

    def describe(self) -> Iterator[Metric]:
        # Describing without touching Redis keeps registration free of I/O.
        yield GaugeMetricFamily("s3pod_queue_jobs", "Jobs in each state.", labels=["state"])
        yield GaugeMetricFamily("s3pod_workers_alive", "Workers with a fresh heartbeat.")
        yield GaugeMetricFamily("s3pod_redis_up", "1 if this scrape could read Redis.")

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("s3pod_redis_up", "1 if this scrape could read Redis.")
        try:
            counts = count_jobs(self.client, self.prefix)
            # By Redis's clock, as heartbeats; over every shard of a sharded prefix.
            alive = sum(age <= self.worker_ttl_s for age in counts.heartbeat_age_s.values())
        except redis.RedisError as exc:
            # A scrape must still answer: report Redis down instead of failing the whole page.
            logger.warning("metrics: cannot read queue depths from Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        depth = GaugeMetricFamily("s3pod_queue_jobs", "Jobs in each state.", labels=["state"])
        for state in ("pending", "processing", "delayed", "dead"):
            depth.add_metric([state], getattr(counts, state))
        yield depth
        yield GaugeMetricFamily("s3pod_workers_alive", "Workers with a fresh heartbeat.", value=int(alive))
        up.add_metric([], 1)
        yield up


class MetricsServer:
    """``/metrics`` over HTTP on ``host:port`` in a background thread (port 0 picks one)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port = int(self._httpd.server_port)
        logger.info("metrics on http://%s/metrics", _host_port(host, self.port))

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
