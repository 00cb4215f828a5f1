"""The HTTP enqueue API: ``POST /v1/jobs``, ``GET /v1/status``, ``GET|PUT /v1/bwlimit``, ``GET /healthz``; the dashboard at ``/``.

For producers that cannot speak Redis. Jobs are validated exactly as the daemon
validates them (the job contract, then the allowed-directory rules) and pushed in one
round trip. Documented in ``docs/openapi.yaml``.

Off by default; it listens on loopback unless told otherwise, and refuses to listen
anywhere else without a bearer token (``--api-token``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import redis

from s3po_client import __version__
from s3po_client.admin import count_jobs
from s3po_client.errors import ConfigError, JobError
from s3po_client.job import Job
from s3po_client.keys import DEFAULT_PREFIX
from s3po_client.producer import push_jobs

from ..safety import PathPolicy
from .dashboard import Dashboard
from .httpserver import BoundedHttpServer
from .httpwire import Admitted, Head, HttpError, Limits, Reply, body_length

if TYPE_CHECKING:
    from s3po_client.transfer.bandwidth import Limiter

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The API's bounds (threads, connections, deadlines): see :mod:`s3pod.service.httpserver`.
DEFAULT_LIMITS = Limits()

ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/jobs": ("POST",),
    "/v1/status": ("GET",),
    "/v1/bwlimit": ("GET", "PUT"),
    "/healthz": ("GET",),
}
#: Paths anyone who can reach the port may call: a load balancer's probe carries no token.
OPEN_PATHS = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    """Return True if every address ``host`` resolves to is a loopback address."""
    if host in ("", "*"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve API host {host!r}: {exc.strerror}") from None
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


class ApiServer:
    """Serves the API until ``close()``; port 0 picks a free one.

    ``check_s3`` is called by ``/healthz``: it returns if the S3 endpoint answers and
    raises otherwise. ``limits`` bounds threads, connections and deadlines; a client over
    them is answered 503 with Retry-After (:mod:`s3pod.service.httpserver`). The
    dashboard (:mod:`s3pod.service.dashboard`) shares the port and the threads;
    ``redact_paths`` hides full local paths from its readers without the token.
    ``bandwidth`` is the process's bandwidth limiter, which ``/v1/bwlimit`` reads and sets, and
    ``destination_bandwidth`` those of the destinations with a limit of their own.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = DEFAULT_PREFIX,
        paths: PathPolicy | None = None,
        token: str | None = None,
        check_s3: Callable[[], None] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limits: Limits = DEFAULT_LIMITS,
        redact_paths: bool = False,
        worker_ttl_s: float = 30.0,
        bandwidth: Limiter | None = None,
        destination_bandwidth: Mapping[str, Limiter] | None = None,
    ) -> None:
        if not token and not is_loopback(host):
            raise ConfigError(
                f"the API would listen on {host!r}, which is not loopback: "
                "set a bearer token (--api-token or S3POD_API_TOKEN)"
            )
        self.client = client
        self.prefix = prefix
        self.paths = paths or PathPolicy()
        self.token = token or None
        self.check_s3 = check_s3
        self.max_body_bytes = max_body_bytes
        self.bandwidth = bandwidth
        #: the limiters of the destinations with a bandwidth limit of their own, by name
        self.destination_bandwidth = dict(destination_bandwidth or {})
        self.dashboard = Dashboard(
            client,
            prefix,
            token=self.token,
            redact_paths=redact_paths,
            worker_ttl_s=worker_ttl_s,
            bandwidth=(lambda: self.bwlimit(None)) if bandwidth is not None else None,
        )
        listener = _listen(host, port)
        self.host = host
        self.port = int(listener.getsockname()[1])
        self._server = BoundedHttpServer(listener, self.admit, server_header=f"s3pod/{__version__}", limits=limits)
        logger.info("API on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.close()

    def admit(self, head: Head) -> Admitted:
        """Route a request by its head alone: what to read and who answers, or HttpError.

        Runs on the server's loop, so it does no I/O; an unauthorised request is refused
        before its body is read.
        """
        if head.method == "HEAD":
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, "HEAD is not supported")
        path = head.path
        if (page := self.dashboard.admit(head)) is not None:
            return page
        methods = ROUTES.get(path)
        if methods is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such resource: {path}")
        if head.method not in methods:
            raise HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{head.method} is not allowed on {path}; use {' or '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        if path not in OPEN_PATHS:
            self._authorize(head.headers.get("Authorization", ""))
        if path == "/v1/jobs":
            return Admitted(
                body_length(head, self.max_body_bytes), lambda body: Reply(HTTPStatus.ACCEPTED, self.enqueue(body))
            )
        if path == "/v1/status":
            return Admitted(0, lambda _: Reply(HTTPStatus.OK, self.status()))
        if path == "/v1/bwlimit":
            if head.method == "PUT":
                return Admitted(
                    body_length(head, self.max_body_bytes), lambda body: Reply(HTTPStatus.OK, self.bwlimit(body))
                )
            return Admitted(0, lambda _: Reply(HTTPStatus.OK, self.bwlimit(None)))
        return Admitted(0, lambda _: Reply(*self.health()), urgent=True)

    def _authorize(self, header: str) -> None:
        if self.token is None:
            return
        scheme, _, given = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="s3pod"'}
        if not header:
            raise HttpError(
                HTTPStatus.UNAUTHORIZED, "missing bearer token: send 'Authorization: Bearer <token>'", headers=challenge
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong bearer token", headers=challenge)

    # -- what each route answers --------------------------------------------------------

    def enqueue(self, body: bytes) -> dict[str, Any]:
        """Validate one job or a list of jobs, push them all or none; return their ids."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        if not items:
            raise HttpError(HTTPStatus.BAD_REQUEST, "empty list: give at least one job")
        jobs = []
        for index, item in enumerate(items):
            where = f"job {index}: " if isinstance(data, list) else ""
            try:
                job = Job.from_dict(item)
                self.paths.check(job.path)
            except JobError as exc:
                extra: dict[str, Any] = {"index": index} if isinstance(data, list) else {}
                raise HttpError(HTTPStatus.BAD_REQUEST, f"{where}{exc}", **extra) from None
            except TypeError as exc:  # a field of the wrong kind that Job's checks did not name
                raise HttpError(HTTPStatus.BAD_REQUEST, f"{where}invalid job: {exc}") from None
            jobs.append(job.stamped())
        try:
            ids = push_jobs(jobs, client=self.client, prefix=self.prefix)
        except (ConfigError, redis.RedisError) as exc:
            logger.error("api: cannot enqueue %d job(s): %s", len(jobs), exc)
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "Redis is unavailable; nothing was queued") from None
        for job in jobs:
            logger.info("enqueued job=%s bucket=%s key=%s via=api", job.id, job.bucket, job.key)
        return {"ids": ids}

    def status(self) -> dict[str, Any]:
        """Return the queue's counts, as ``s3po status --json`` prints them, and the bandwidth limit."""
        try:
            counts = count_jobs(self.client, self.prefix).to_dict()
            return counts if self.bandwidth is None else {**counts, "bandwidth": self.bandwidth.status()}
        except redis.RedisError as exc:
            logger.error("api: cannot read the queue: %s", exc)
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "Redis is unavailable") from None

    def bwlimit(self, body: bytes | None) -> dict[str, Any]:
        """Return the bandwidth limits; with a body ``{"rate": "5M"}`` (anything ``--bwlimit`` takes), set one first.

        ``{"rate": ..., "destination": "NAME"}`` sets the limit of a destination with one of its own.
        """
        from s3po_client.transfer.bandwidth import parse_bwlimit

        if self.bandwidth is None:
            raise HttpError(HTTPStatus.NOT_FOUND, "this server has no bandwidth limiter")
        if body is not None:
            rate, name = _rate_request(body)
            limiter = self.bandwidth if name is None else self.destination_bandwidth.get(name)
            if limiter is None:
                known = ", ".join(self.destination_bandwidth) or "none"
                raise HttpError(
                    HTTPStatus.BAD_REQUEST, f"no destination {name!r} with a limit of its own (known: {known})"
                )
            try:
                schedule = parse_bwlimit(rate)
            except ConfigError as exc:
                raise HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from None
            limiter.follow(schedule)
            logger.info("bwlimit set bwlimit=%r destination=%s via=api", schedule.text, name or "-")
        status = self.bandwidth.status()
        if self.destination_bandwidth:
            status["destinations"] = {name: lim.status() for name, lim in self.destination_bandwidth.items()}
        return status

    def health(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """Return 200 if Redis and S3 both answer, else 503; the body says which is down."""
        checks: dict[str, bool] = {}
        try:
            checks["redis"] = bool(self.client.ping())
        except redis.RedisError as exc:
            logger.warning("healthz: Redis does not answer: %s", exc)
            checks["redis"] = False
        if self.check_s3 is not None:
            try:
                self.check_s3()
                checks["s3"] = True
            except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"; the reason is logged
                logger.warning("healthz: S3 does not answer: %s", exc)
                checks["s3"] = False
        ok = all(checks.values())
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), {"ok": ok, **checks}


def _rate_request(body: bytes) -> tuple[str, str | None]:
    """Return the rate and destination (None: the process's) a ``PUT /v1/bwlimit`` body asks for; HttpError 400."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or not {"rate"} <= set(data) <= {"rate", "destination"}
        or not all(isinstance(v, str) for v in data.values())
    ):
        raise HttpError(
            HTTPStatus.BAD_REQUEST,
            'expected {"rate": "<RATE>"} (and "destination": "<NAME>" for one of its own), e.g. {"rate": "5M"}',
        )
    return data["rate"], data.get("destination")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, as http.server would open it (SO_REUSEADDR)."""
    try:
        family = socket.getaddrinfo(host or None, port, proto=socket.IPPROTO_TCP)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve API host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # A burst of clients connecting at once must not overflow the queue of connections
        # the kernel holds for accept() (socketserver's default is 5).
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} for the API: {exc.strerror}") from None
    return sock
