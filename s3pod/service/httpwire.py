"""HTTP/1.1 on the wire, as much of it as the API needs: a request head in, a JSON reply out,
and the limits that bound them.

Pure functions and values; the sockets are :mod:`s3pod.service.httpserver`'s.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from s3po_client.errors import ConfigError

#: Characters allowed in a method name (RFC 9110 §5.6.2, "token").
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class HttpError(Exception):
    """An error answered to the client with ``status``, a JSON body and ``headers``; it ends the connection."""

    def __init__(
        self, status: HTTPStatus, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"error": message, **extra}
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        """The answer this error stands for."""
        return Reply(self.status, self.body, self.headers, close=True)


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: a JSON object, or bytes of ``content_type`` (a page); ``close`` ends the connection after it."""

    status: HTTPStatus
    body: Mapping[str, Any] | bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    close: bool = False
    content_type: str = "application/json"

    def encode(self, *, server: str, close: bool, with_body: bool = True) -> bytes:
        """The bytes to send: status line, headers, and (unless answering HEAD) the body."""
        if isinstance(self.body, bytes):
            payload = self.body
        else:
            payload = (json.dumps(self.body, sort_keys=True) + "\n").encode()
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Server: {server}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(payload)}",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head + payload if with_body else head


@dataclass(frozen=True, slots=True)
class Head:
    """A request's line and headers."""

    method: str
    target: str
    version: str
    headers: http.client.HTTPMessage

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def keep_alive(self) -> bool:
        """Whether the client may send another request on this connection (RFC 9112 §9.3)."""
        tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def declares_body(self) -> bool:
        """Whether a body follows the head."""
        length = self.headers.get("Content-Length", "0").strip()
        return "Transfer-Encoding" in self.headers or length != "0"

    @property
    def expects_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending its body (curl does, over 1 KiB)."""
        return self.version == "HTTP/1.1" and self.headers.get("Expect", "").lower() == "100-continue"


@dataclass(frozen=True, slots=True)
class Admitted:
    """What to do with a request whose head was accepted.

    Read ``body_bytes`` more, then call ``answer`` with them in a worker thread. An
    ``urgent`` request (a health probe) has a thread of its own, so a backlog of others
    never delays it.
    """

    body_bytes: int
    answer: Callable[[bytes], Reply]
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """What the API's server holds at most (:mod:`s3pod.service.httpserver` says how each is kept)."""

    workers: int = 8
    max_connections: int = 256
    request_timeout_s: float = 10.0
    max_head_bytes: int = 16 * 1024
    max_buffered_bytes: int = 16 * 1024 * 1024
    retry_after_s: int = 2

    def __post_init__(self) -> None:
        for name in ("workers", "max_connections", "max_head_bytes", "max_buffered_bytes", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"API limit {name} must be at least 1, got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"API request timeout must be positive, got {self.request_timeout_s}")

    def busy(self) -> HttpError:
        """503 with Retry-After: the answer when a request is over a bound."""
        return HttpError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"the API is busy; retry after {self.retry_after_s}s",
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def head_too_large(self) -> HttpError:
        return HttpError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request line and headers are over {self.max_head_bytes} bytes"
        )

    def timed_out(self) -> HttpError:
        return HttpError(HTTPStatus.REQUEST_TIMEOUT, f"the request took over {self.request_timeout_s:g}s to arrive")


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def parse_head(raw: bytes) -> Head:
    """Parse a request line and its headers (``raw`` ends with the blank line); HttpError 400 if malformed."""
    line, _, rest = raw.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN or not parts[1].startswith("/"):
        raise HttpError(HTTPStatus.BAD_REQUEST, f"malformed request line {line[:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{version[:20]!r} is not supported; use HTTP/1.1")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as exc:
        raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"bad headers: {exc}") from None
    return Head(method, target, version, headers)


def body_length(head: Head, limit: int) -> int:
    """The request's Content-Length, checked: HttpError 411, 400 or 413 when it cannot be read."""
    if "chunked" in head.headers.get("Transfer-Encoding", "").lower():
        raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length; chunked bodies are not accepted")
    raw = head.headers.get("Content-Length")
    if raw is None:
        raise HttpError(HTTPStatus.LENGTH_REQUIRED, "missing Content-Length")
    if not raw.strip().isdigit():
        raise HttpError(HTTPStatus.BAD_REQUEST, f"bad Content-Length {raw!r}")
    length = int(raw)
    if length > limit:
        raise HttpError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body of {length} bytes is over the limit of {limit} bytes; send fewer jobs per request",
        )
    return length
