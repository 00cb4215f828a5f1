"""The HTTP enqueue API: ``POST /v1/jobs``, ``GET /v1/status``, ``GET /healthz``.

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
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import redis

from s3po_client import __version__
from s3po_client.admin import count_jobs
from s3po_client.errors import ConfigError, JobError
from s3po_client.job import Job
from s3po_client.keys import DEFAULT_PREFIX
from s3po_client.producer import push_jobs

from ..safety import PathPolicy

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Seconds a client may take to send its request before the connection is dropped.
REQUEST_TIMEOUT_S = 10.0

ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/jobs": ("POST",),
    "/v1/status": ("GET",),
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


class HttpError(Exception):
    """An error answered to the client with ``status`` and a JSON body."""

    def __init__(self, status: HTTPStatus, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


class ApiServer:
    """Serves the API in background threads until ``close()``; port 0 picks a free one.

    ``check_s3`` is called by ``/healthz``: it returns if the S3 endpoint answers and
    raises otherwise.
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
        self._httpd = _make_server(host, port, self)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="s3pod-api", daemon=True
        )
        self._thread.start()
        logger.info("API on http://%s%s", f"[{host}]" if ":" in host else host, f":{self.port}")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

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
                extra = {"index": index} if isinstance(data, list) else {}
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
        """Return the queue's counts, as ``s3po status --json`` prints them."""
        try:
            return count_jobs(self.client, self.prefix).to_dict()
        except redis.RedisError as exc:
            logger.error("api: cannot read the queue: %s", exc)
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "Redis is unavailable") from None

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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"s3pod/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    # The socket timeout bounds each read, not the request: a client sending one byte every
    # few seconds (slowloris) would hold its thread forever. A timer cuts the connection
    # unless the whole request (line, headers, body) is read within REQUEST_TIMEOUT_S.
    def handle_one_request(self) -> None:
        self._deadline = threading.Timer(REQUEST_TIMEOUT_S, self._cut_off)
        self._deadline.daemon = True
        self._deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._deadline.cancel()

    def _cut_off(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self) -> None:
        api = self.server.api
        try:
            path = urlsplit(self.path).path
            if path != "/v1/jobs":
                self._deadline.cancel()  # the request is read: answering it is not bounded
            methods = ROUTES.get(path)
            if methods is None:
                raise HttpError(HTTPStatus.NOT_FOUND, f"no such resource: {path}")
            if self.command not in methods:
                raise HttpError(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"{self.command} is not allowed on {path}; use {' or '.join(methods)}",
                )
            if path not in OPEN_PATHS:
                self._authorize(api.token)
            if path == "/v1/jobs":
                self._send(HTTPStatus.ACCEPTED, api.enqueue(self._read_body(api.max_body_bytes)))
            elif path == "/v1/status":
                self._send(HTTPStatus.OK, api.status())
            else:
                self._send(*api.health())
        except HttpError as exc:
            # The request body may be unread: the connection cannot carry another request.
            self.close_connection = True
            self._send(exc.status, exc.body, allow=ROUTES.get(urlsplit(self.path).path))

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.close_connection = True
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "HEAD is not supported"}, body=False)

    def _authorize(self, token: str | None) -> None:
        if token is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise HttpError(HTTPStatus.UNAUTHORIZED, "missing bearer token: send 'Authorization: Bearer <token>'")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong bearer token")

    def _read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length; chunked bodies are not accepted")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "missing Content-Length")
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HttpError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {raw!r}") from None
        if length > limit:
            # The body is not read: close the connection instead of draining it.
            self.close_connection = True
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is over the limit of {limit} bytes; send fewer jobs per request",
            )
        body = self.rfile.read(length)
        self._deadline.cancel()
        return body

    def _send(
        self, status: HTTPStatus, data: dict[str, Any], allow: tuple[str, ...] | None = None, body: bool = True
    ) -> None:
        payload = (json.dumps(data, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="s3pod"')
        if status == HTTPStatus.METHOD_NOT_ALLOWED and allow:
            self.send_header("Allow", ", ".join(allow))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # Never the headers: the Authorization header carries the token.
        logger.debug("api %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of clients connecting at once
    # overflowed it and most of 200 concurrent ones were reset (tests/faults/test_api_abuse.py).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, api: ApiServer) -> None:
        self.address_family = family  # read by TCPServer.__init__ when it makes the socket
        self.api = api
        super().__init__(address, _Handler)


def _make_server(host: str, port: int, api: ApiServer) -> _Server:
    try:
        family = socket.getaddrinfo(host or None, port, proto=socket.IPPROTO_TCP)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve API host {host!r}: {exc.strerror}") from None
    try:
        return _Server((host, port), family, api)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} for the API: {exc.strerror}") from None
