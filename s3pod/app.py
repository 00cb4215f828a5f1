"""Running s3pod as a service: the parts around the worker, and :func:`run` to start them.

Two ways to run it:

- under systemd (``Type=notify``): in the foreground; :class:`Service` sends READY=1 once
  Redis and S3 answer, WATCHDOG=1 from the worker's upkeep loop, STOPPING=1 on the way out;
- without systemd: ``--daemon --pidfile PATH --log-file PATH`` detaches (:mod:`s3pod.service.pidfile`).

Around the worker, it serves metrics (:mod:`s3pod.service.metrics`) and the HTTP API
(:mod:`s3pod.service.api`) when asked to.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import redis

from s3po_client import __version__
from s3po_client.errors import ConfigError
from s3po_client.keys import DEFAULT_PREFIX, QueueKeys
from s3po_client.redaction import redact_url
from s3po_client.redis_url import connect, split_prefixes
from s3po_client.settings import S3Settings, TransferSettings
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.bandwidth import Schedule

from .config import WorkerConfig, WorkerHooks
from .destinations import Destination, Destinations
from .events import Listener
from .live import Live
from .loop import Worker
from .reachability import s3_answers
from .safety import PathPolicy
from .service.activity import Activity
from .service.api import DEFAULT_MAX_BODY_BYTES, ApiServer
from .service.logs import LOG_FORMATS
from .service.metrics import DEFAULT_WORKER_TTL_S, Metrics, MetricsServer
from .service.notify import Notifier
from .service.pidfile import PidFile, daemonize
from .watchspec import SpoolSettings

logger = logging.getLogger(__name__)

#: Socket timeouts of the Redis client the API and the metrics use (not the worker's).
REDIS_TIMEOUT_S = 5.0
#: Redis connections beyond one per job thread: the keeper, heartbeats, the health and metrics reads.
REDIS_SPARE_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class Address:
    """A ``HOST:PORT`` to listen on (``[::1]:9100`` for IPv6)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """Return the address in ``text``; raise ConfigError if it is not ``HOST:PORT``."""
        host, sep, port = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"expected HOST:PORT (e.g. 127.0.0.1:9100), got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """How s3pod runs as a service: detached or not, where it logs, what it serves."""

    daemon: bool = False
    pidfile: str | None = None
    log_file: str | None = None
    log_format: str = "text"
    metrics_listen: Address | None = None
    api_listen: Address | None = None
    api_token: str | None = field(default=None, repr=False)
    api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: the dashboard shows readers without the token file names only
    api_redact_paths: bool = False

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if self.daemon and not self.pidfile:
            raise ConfigError("--daemon needs --pidfile: it is how the daemon is found and stopped")
        if self.daemon and not self.log_file:
            raise ConfigError("--daemon needs --log-file: a detached daemon has no terminal to log to")
        if self.api_max_body_bytes < 1024:
            raise ConfigError(f"API body limit must be at least 1024 bytes, got {self.api_max_body_bytes}")


def s3_check(url: str, ca_bundle: str | None = None) -> Callable[[], None]:
    """Return a check that returns if an HTTP server answers at ``url`` and raises otherwise.

    The same test as the worker's readiness (any HTTP answer, 403 included), so /healthz
    and READY=1 agree.
    """

    def check() -> None:
        why = s3_answers(url, ca_bundle=ca_bundle)
        if why is not None:
            raise ConnectionError(f"S3 endpoint {url}: {why}")

    return check


class Service:
    """What surrounds the worker: metrics and API servers, outcome listeners, systemd.

    Build it, ``start()`` it, give ``listeners`` to the worker, ``ready`` and ``tick`` to
    its ``on_ready`` and ``on_tick`` hooks, and ``close()`` it at the end (it says
    STOPPING=1 first). :func:`run` does all that.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        client: redis.Redis,
        *,
        redis_url: str,
        prefix: str = DEFAULT_PREFIX,
        paths: PathPolicy | None = None,
        check_s3: Callable[[], None] | None = None,
        notifier: Notifier | None = None,
        worker_ttl_s: float = DEFAULT_WORKER_TTL_S,
        live: Live | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.redis_url = redis_url
        self.prefix = prefix
        self.paths = paths or PathPolicy()
        self.check_s3 = check_s3
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        self.worker_ttl_s = worker_ttl_s
        self.metrics = Metrics()
        #: what may change while running: the bandwidth limits (shown by the metrics, set through the API), the watches
        self.live = live or Live()
        self.bandwidth = self.live.bandwidth
        self.metrics.watch_bandwidth(self.bandwidth, self.live.destination_bandwidth)
        self.metrics.watch_spool(self.live.watch_counts)
        self.listeners: list[Listener] = [self.metrics]
        self.metrics_server: MetricsServer | None = None
        self.api_server: ApiServer | None = None
        self._said_stopping = False

    def start(self) -> None:
        """Open the metrics and API ports (raise ConfigError if one cannot be opened)."""
        s = self.settings
        try:
            if s.metrics_listen is not None:
                self.metrics.watch_queue(self.client, self.prefix, self.worker_ttl_s)
                try:
                    self.metrics_server = MetricsServer(
                        self.metrics.registry, s.metrics_listen.host, s.metrics_listen.port
                    )
                except OSError as exc:
                    raise ConfigError(f"cannot serve metrics on {s.metrics_listen}: {exc.strerror}") from None
            if s.api_listen is not None:
                self.api_server = ApiServer(
                    self.client,
                    host=s.api_listen.host,
                    port=s.api_listen.port,
                    prefix=self.prefix,
                    paths=self.paths,
                    token=s.api_token,
                    check_s3=self.check_s3,
                    max_body_bytes=s.api_max_body_bytes,
                    redact_paths=s.api_redact_paths,
                    worker_ttl_s=self.worker_ttl_s,
                    bandwidth=self.bandwidth,
                    destination_bandwidth=self.live.destination_bandwidth,
                )
        except BaseException:
            self._close_servers()
            raise

    def ready(self) -> None:
        """Tell systemd start-up is done (READY=1) and start the watchdog clock."""
        self.notifier.ready(f"processing jobs from {redact_url(self.redis_url)} prefix={self.prefix}")
        if self.notifier.watchdog_interval_s is not None:
            self.notifier.watchdog()

    def tick(self) -> None:
        """Call from the worker's loop: pings the watchdog when due."""
        self.notifier.watchdog_if_due()

    def stopping(self) -> None:
        """Tell systemd the service is shutting down (STOPPING=1), once, as the stop begins."""
        if not self._said_stopping:
            self._said_stopping = True
            self.notifier.stopping("stopping: finishing the jobs in flight")

    def close(self) -> None:
        """Say STOPPING=1 (unless the stop said it already), then close the servers."""
        self.stopping()
        self._close_servers()

    def _close_servers(self) -> None:
        for server in (self.api_server, self.metrics_server):
            if server is not None:
                server.close()
        self.api_server = self.metrics_server = None

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def run(
    s3: S3Settings,
    redis_url: str,
    config: WorkerConfig,
    settings: ServiceSettings,
    *,
    transfer: TransferSettings | None = None,
    burst: bool = False,
    spool: SpoolSettings | None = None,
    bwlimit: Schedule | None = None,
    on_reload: Callable[[Live], None] | None = None,
    destinations: tuple[Destination, ...] = (),
) -> int:
    """Run the daemon with everything around it; return its exit status.

    ``bwlimit`` limits every upload at once (the API can change it); ``on_reload`` is called on SIGHUP,
    in a thread, with what it may change (:class:`~s3pod.live.Live`); ``destinations``: those a job may name.
    With ``settings.daemon``, first lock the pidfile (AlreadyRunningError if another s3pod
    holds it) and detach; the log handlers configured so far keep their files. Then open
    the metrics and API ports, and run the worker with the service's listeners and hooks.
    """
    if settings.daemon:
        assert settings.pidfile is not None and settings.log_file is not None  # checked by ServiceSettings
        pidfile = PidFile(settings.pidfile)
        pidfile.acquire()
        daemonize(pidfile, settings.log_file, preserve=_log_streams())
        logger.info("detached: pid=%d pidfile=%s", os.getpid(), pidfile.path)
    probe = config.s3_probe_url or probe_url(s3)
    config = replace(config, s3_probe_url=probe, s3_probe_ca_bundle=s3.ca_bundle)
    client = connect(redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    service = Service(
        settings,
        client,
        redis_url=redis_url,
        prefix=config.prefix,
        paths=config.paths,
        check_s3=s3_check(probe, s3.ca_bundle),
        worker_ttl_s=config.heartbeat_timeout_s,
        live=Live(bwlimit, destinations),
    )
    hooks = WorkerHooks(on_ready=service.ready, on_tick=service.tick, on_stopping=service.stopping)
    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        reload_on_sighup(on_reload or nothing_to_reload, service.live)
    try:
        with service:
            service.notifier.status("starting: waiting for Redis and the S3 endpoint")
            return serve(
                s3,
                redis_url,
                config,
                transfer=transfer,
                burst=burst,
                listeners=service.listeners,
                hooks=hooks,
                spool=spool,
                live=service.live,
                destinations=destinations,
            )
    finally:
        client.close()


def reload_on_sighup(reload: Callable[[Live], None], live: Live) -> None:
    """Call ``reload(live)`` on each SIGHUP, in a new thread: it reads files and logs, which a handler must not."""

    def handle(signum: int, frame: object) -> None:
        threading.Thread(target=reload, args=(live,), name="s3pod-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, handle)


def nothing_to_reload(_live: Live) -> None:
    """SIGHUP without ``--config``: say so, rather than let the signal end the daemon."""
    logger.warning("SIGHUP: no --config file to reload; nothing changed")


def probe_url(s3: S3Settings) -> str:
    """Return the URL whose HTTP answer means the S3 endpoint is reachable."""
    if s3.endpoint_url:
        return s3.endpoint_url
    return f"https://s3.{s3.region or 'us-east-1'}.amazonaws.com"


def _worker_redis(redis_url: str | None, config: WorkerConfig) -> redis.Redis:
    """The worker's Redis client: socket timeouts (a silent network cannot hang a thread) and a
    connection for every job thread at once (a blocking claim holds one; redis-py caps a pool
    at 100 by default, which --concurrency 128 ran into as "Too many connections")."""
    return connect(
        redis_url,
        socket_timeout=config.claim_timeout_s + 10,
        socket_connect_timeout=5,
        health_check_interval=30,
        max_connections=config.concurrency + REDIS_SPARE_CONNECTIONS,
    )


def serve(
    s3: S3Settings,
    redis_url: str,
    config: WorkerConfig,
    *,
    transfer: TransferSettings | None = None,
    burst: bool = False,
    listeners: Sequence[Listener] = (),
    hooks: WorkerHooks | None = None,
    signals: bool = True,
    spool: SpoolSettings | None = None,
    live: Live | None = None,
    destinations: tuple[Destination, ...] = (),
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or, with ``burst``, until the queue is empty); return its exit status.

    Connects to Redis (with socket timeouts, so a silent network cannot hang a thread), builds
    the engines (limited by ``live``'s limiters; one per destination, on first use), warns when
    no ``--allow-dir`` limits the files, and runs one :class:`~s3pod.loop.Worker` (with a
    :class:`~s3pod.spool.Spool` watcher when ``spool`` has watches, or a reload gives some).
    """
    live = live or Live(destinations=destinations)
    client = _worker_redis(redis_url, config)
    if not config.paths.allow_dirs:
        logger.warning(
            "no --allow-dir given: any process able to write to Redis can make s3pod "
            "read, upload and delete any file it can access"
        )
    if config.s3_probe_url is None:
        config = replace(config, s3_probe_url=probe_url(s3), s3_probe_ca_bundle=s3.ca_bundle)
    logger.info(
        "s3pod %s: worker=%s redis=%s endpoint=%s bwlimit=%r",
        __version__,
        config.worker_id,
        redact_url(redis_url),
        s3.endpoint_url or "AWS",
        live.bandwidth.schedule.text,
    )
    # Enough pooled connections for every job in flight to send all its parts at once.
    transfer = (transfer or TransferSettings()).pooled_for(config.concurrency)
    # What the dashboard and `s3po top` show: kept in Redis, shared by every daemon of the queue.
    activity = Activity(client, QueueKeys(split_prefixes(config.prefix)[0]), config.worker_id)
    listeners = (*listeners, activity.throughput)
    engine = TransferEngine(s3, transfer, limiter=live.bandwidth)
    routes = Destinations(engine, destinations, live.destination_bandwidth)
    worker = Worker(client, engine, config, listeners, hooks, activity.uploads, routes)
    if signals:
        worker.install_signal_handlers()
    activity.start()
    live.start_watching(spool, redis_url, config.prefix)
    try:
        return worker.run(burst=burst)
    finally:
        live.close()
        activity.close()
        routes.close()
        client.close()


def _log_streams() -> list[Any]:
    """Return the open files of the root logger's handlers, which detaching must not close."""
    return [
        h.stream
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is not None
    ]
