"""The dashboard: a page at ``/`` of the API's address, what it reads and what it may do.

========================= ====== =============================================================
path                      method answers
========================= ====== =============================================================
``/``, ``/static/*``      GET    the page, its CSS and JavaScript (package files, nothing else)
``/dashboard/state``      GET    counts, workers, uploads in flight, the last hour, failures, the bwlimit
``/dashboard/dead``       GET    a page of dead letters (``?offset=&limit=``), newest first
``/dashboard/failures``   GET    a page of the recent failures, likewise
``/dashboard/login``      POST   form field ``token``: sets the session cookie, back to ``/``
``/dashboard/logout``     POST   clears it
``/dashboard/dead/retry`` POST   ``{"ref": ...}`` one dead letter, or ``{"all": true}``
``/dashboard/dead/delete`` POST  likewise
========================= ====== =============================================================

Reading needs nothing: whoever reaches the port sees the page (``redact_paths`` hides full
local paths from a reader without the token). Acting needs the API token, either as
``Authorization: Bearer`` (scripts) or as the session cookie the login form sets
(HttpOnly, SameSite=Strict, signed with the token, so changing the token ends every
session). A cookie-borne POST must also come from the page's own origin (Origin or Referer
naming the Host it was sent to) and carry the CSRF token the page was given, a value no
other site can read. Without a token configured, the page is read-only.

The page polls ``/dashboard/state`` every two seconds while it is visible; the answer is
read from Redis at most once a second whatever the number of pages open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from s3po_client.activity import Activity, read_activity, read_failures
from s3po_client.admin import DeadEntry, purge_dead, retry_dead
from s3po_client.keys import QueueKeys
from s3po_client.redaction import redact
from s3po_client.redis_url import split_prefixes

from .httpwire import Admitted, Head, HttpError, Reply, body_length

logger = logging.getLogger(__name__)

SESSION_COOKIE = "s3pod_session"
SESSION_S = 12 * 3600
STATE_EVERY_S = 1.0
PAGE = 20
PAGE_MAX = 100
MAX_FORM_BYTES = 4096
#: Dead letters read per round trip while looking for one of them.
FIND_CHUNK = 500
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
ROUTES: dict[str, str] = {
    **{path: "GET" for path in STATIC_FILES},
    "/dashboard/state": "GET",
    "/dashboard/dead": "GET",
    "/dashboard/failures": "GET",
    "/dashboard/login": "POST",
    "/dashboard/logout": "POST",
    "/dashboard/dead/retry": "POST",
    "/dashboard/dead/delete": "POST",
}
#: The page loads only its own files, and no other site may frame it.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: An absolute local path in free text (an error message): a slash not after a word, colon or slash.
_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def hide_path(text: str) -> str:
    """Return ``text`` with each absolute path cut to its last part: ``/srv/spool/a.log`` → ``…/a.log``."""
    return _PATH.sub(lambda m: "…/" + m.group(1), text)


def dead_ref(entry: DeadEntry) -> str:
    """A short name for one dead letter, for the page to point at it."""
    return hashlib.sha256(entry.stored).hexdigest()[:20]


class Dashboard:
    """Answers the dashboard's paths (``admit`` returns None for any other path)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        *,
        token: str | None = None,
        redact_paths: bool = False,
        worker_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        bandwidth: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.client = client
        #: returns the daemon's bandwidth limits (as ``GET /v1/bwlimit``), shown on the page
        self.bandwidth = bandwidth
        self.prefix = prefix
        self.token = token or None
        self.redact_paths = redact_paths
        self.worker_ttl_s = worker_ttl_s
        self.clock = clock
        self._files = {
            path: (resources.files(__package__) / "static" / name).read_bytes()
            for path, (name, _) in STATIC_FILES.items()
        }
        self._state_lock = threading.Lock()
        self._state: tuple[float, Activity] | None = None

    def admit(self, head: Head) -> Admitted | None:
        """What the request gets, or None if its path is not the dashboard's."""
        path = head.path
        method = ROUTES.get(path)
        if method is None:
            return None
        if head.method != method:
            raise HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{head.method} is not allowed on {path}; use {method}",
                headers={"Allow": method},
            )
        if path in STATIC_FILES:
            return Admitted(0, lambda _: self._file(path))
        if path == "/dashboard/state":
            return Admitted(0, lambda _: self._json(self.state(self._reader(head))))
        if path == "/dashboard/dead":
            return Admitted(0, lambda _: self._json(self.dead_page(head)))
        if path == "/dashboard/failures":
            return Admitted(0, lambda _: self._json(self.failures_page(head)))
        size = body_length(head, MAX_FORM_BYTES)
        if path == "/dashboard/login":
            self._check_origin(head)
            return Admitted(size, lambda body: self.login(head, body))
        if path == "/dashboard/logout":
            self._check_origin(head)
            return Admitted(size, lambda _: self._back(self._cookie(head, "", 0)))
        self._authorize(head)
        action = self.retry if path.endswith("/retry") else self.delete
        return Admitted(size, lambda body: self._json(action(_target(body))))

    # -- who asks -----------------------------------------------------------------------------

    def _sign(self, purpose: str, value: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _session(self, head: Head) -> str | None:
        """The request's session cookie if it is one this token signed and it has not expired."""
        if self.token is None:
            return None
        try:
            morsel = SimpleCookie(head.headers.get("Cookie", "")).get(SESSION_COOKIE)
        except CookieError:
            return None
        value = morsel.value if morsel is not None else ""
        expires, _, rest = value.partition(".")
        signed, _, signature = value.rpartition(".")
        if not expires.isdigit() or int(expires) < self.clock() or not rest:
            return None
        return value if hmac.compare_digest(signature, self._sign("session", signed)) else None

    def _bearer(self, head: Head) -> bool:
        scheme, _, given = head.headers.get("Authorization", "").partition(" ")
        return (
            self.token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(given.strip().encode(), self.token.encode())
        )

    def _reader(self, head: Head) -> str | None:
        """The CSRF token for a reader with the token ("" for a bearer), or None for anyone else."""
        if self._bearer(head):
            return ""
        session = self._session(head)
        return self._sign("csrf", session) if session is not None else None

    def _check_origin(self, head: Head) -> None:
        """Refuse a POST a browser sent from another site (the Origin or Referer names another host)."""
        source = head.headers.get("Origin") or head.headers.get("Referer")
        host = head.headers.get("X-Forwarded-Host", head.headers.get("Host", "")).split(",")[0].strip()
        if source is None or source == "null" or urlsplit(source).netloc != host:
            raise HttpError(HTTPStatus.FORBIDDEN, "cross-site request refused: Origin must be this page's own")

    def _authorize(self, head: Head) -> None:
        if self.token is None:
            raise HttpError(HTTPStatus.FORBIDDEN, "the dashboard is read-only: start s3pod with --api-token to act")
        if self._bearer(head):
            return  # a script's header, which no other site can make a browser send
        if "Authorization" in head.headers:
            raise HttpError(
                HTTPStatus.UNAUTHORIZED, "wrong bearer token", headers={"WWW-Authenticate": 'Bearer realm="s3pod"'}
            )
        session = self._session(head)
        if session is None:
            raise HttpError(HTTPStatus.UNAUTHORIZED, "log in with the API token first")
        self._check_origin(head)
        given = head.headers.get("X-CSRF-Token", "")
        if not hmac.compare_digest(given.encode(), self._sign("csrf", session).encode()):
            raise HttpError(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token: reload the page")

    def login(self, head: Head, body: bytes) -> Reply:
        """Check the form's token; right: a session cookie and back to the page, wrong: back with a note."""
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            logger.warning("dashboard: a login with a wrong token was refused")
            return self._back(None, "/?login=failed")
        signed = f"{int(self.clock() + SESSION_S)}.{secrets.token_hex(16)}"
        logger.info("dashboard: logged in")
        return self._back(self._cookie(head, f"{signed}.{self._sign('session', signed)}", SESSION_S))

    def _cookie(self, head: Head, value: str, max_age_s: int) -> str:
        secure = "; Secure" if head.headers.get("X-Forwarded-Proto", "").lower() == "https" else ""
        return f"{SESSION_COOKIE}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict{secure}"

    def _back(self, cookie: str | None, location: str = "/") -> Reply:
        headers = {"Location": location, **({"Set-Cookie": cookie} if cookie is not None else {})}
        return Reply(HTTPStatus.SEE_OTHER, b"", headers, content_type="text/plain")

    # -- what it reads ---------------------------------------------------------------------------

    def _file(self, path: str) -> Reply:
        return Reply(HTTPStatus.OK, self._files[path], PAGE_HEADERS, content_type=STATIC_FILES[path][1])

    def _json(self, body: dict[str, Any]) -> Reply:
        return Reply(HTTPStatus.OK, body, {"X-Content-Type-Options": "nosniff"})

    def activity(self) -> Activity:
        """The queue's activity, read from Redis at most once per ``STATE_EVERY_S`` for every page open."""
        with self._state_lock:
            now = time.monotonic()
            if self._state is None or now - self._state[0] >= STATE_EVERY_S:
                try:
                    self._state = (now, read_activity(self.client, self.prefix, worker_ttl_s=self.worker_ttl_s))
                except redis.RedisError as exc:
                    logger.warning("dashboard: cannot read the queue: %s", exc)
                    raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "Redis is unavailable") from None
            return self._state[1]

    def state(self, csrf: str | None) -> dict[str, Any]:
        """The page's data; ``csrf`` is None for a reader without the token."""
        body = self.activity().to_dict()
        hide = self._hides(csrf)
        for upload in body["uploads"]:
            upload["path"] = hide(upload["path"])
        for failure in body["failures"]:
            failure["error"] = hide(redact(failure["error"]))
        body["bandwidth"] = self.bandwidth() if self.bandwidth is not None else None
        body["access"] = {
            "can_act": self.token is not None and csrf is not None,
            "csrf": csrf or None,
            "login": self.token is not None,
        }
        return body

    def _hides(self, csrf: str | None) -> Callable[[str], str]:
        return hide_path if self.redact_paths and csrf is None else str

    def dead_page(self, head: Head) -> dict[str, Any]:
        """One page of dead letters, newest first, without the job's text (its headers may hold a key)."""
        offset, limit = _page_of(head)
        hide = self._hides(self._reader(head))
        try:
            total, entries = self._dead_slice(offset, limit)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        items = []
        for entry in entries:
            job = entry.job
            item = {k: v for k, v in entry.to_dict().items() if k != "job"}
            item.update(ref=dead_ref(entry), retryable=job is not None, error=hide(redact(entry.error)))
            item["path"] = hide(item["path"]) if item["path"] else None
            items.append(item)
        return {"total": total, "offset": offset, "limit": limit, "entries": items}

    def failures_page(self, head: Head) -> dict[str, Any]:
        """One page of the recent failures, newest first (the first is in the state too)."""
        offset, limit = _page_of(head)
        hide = self._hides(self._reader(head))
        try:
            total, found = read_failures(self.client, self.prefix, offset, limit)
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        entries = [{**asdict(f), "error": hide(redact(f.error))} for f in found]
        return {"total": total, "offset": offset, "limit": limit, "entries": entries}

    def _dead_slice(self, offset: int, limit: int) -> tuple[int, list[DeadEntry]]:
        """``limit`` dead entries from ``offset``, over the shards one after another; and how many there are."""
        shards = [QueueKeys(p).dead for p in split_prefixes(self.prefix)]
        lengths = [int(self.client.llen(key)) for key in shards]
        found: list[DeadEntry] = []
        start = offset
        for key, length in zip(shards, lengths):
            if start < length and len(found) < limit:
                raws = self.client.lrange(key, start, start + limit - len(found) - 1)
                found += [_entry(raw) for raw in raws]
            start = max(0, start - length)
        return sum(lengths), found

    # -- what it does ---------------------------------------------------------------------------

    def retry(self, ref: str | None) -> dict[str, Any]:
        """Queue one dead letter again (or every one): its attempts start over."""
        try:
            if ref is None:
                report = retry_dead(self.client, None, self.prefix)
                logger.info("dashboard: retried %d dead job(s)", len(report.queued))
                return {"queued": report.queued, "invalid": len(report.invalid)}
            shard, entry = self._find(ref)
            job = entry.job
            if job is None:
                raise HttpError(HTTPStatus.CONFLICT, "this dead letter is not a valid job: delete it and enqueue anew")
            queued = retry_dead(self.client, [job.id], shard).queued
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        logger.info("dashboard: retried job=%s", job.id)
        return {"queued": queued, "invalid": 0}

    def delete(self, ref: str | None) -> dict[str, Any]:
        """Delete one dead letter (or every one present now)."""
        try:
            if ref is None:
                deleted = purge_dead(self.client, self.prefix)
            else:
                shard, entry = self._find(ref)
                deleted = int(self.client.lrem(QueueKeys(shard).dead, 1, entry.stored))  # type: ignore[arg-type]  # bytes: the entry as stored
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        logger.info("dashboard: deleted %d dead job(s)", deleted)
        return {"deleted": deleted}

    def _find(self, ref: str) -> tuple[str, DeadEntry]:
        """The shard and dead entry ``ref`` names, or HttpError 404."""
        for shard in split_prefixes(self.prefix):
            key = QueueKeys(shard).dead
            for start in range(0, int(self.client.llen(key)), FIND_CHUNK):
                for raw in self.client.lrange(key, start, start + FIND_CHUNK - 1):
                    entry = _entry(raw)
                    if dead_ref(entry) == ref:
                        return shard, entry
        raise HttpError(HTTPStatus.NOT_FOUND, "no such dead letter (retried or deleted meanwhile?)")


def _target(body: bytes) -> str | None:
    """The ``ref`` an action names, or None for ``{"all": true}``; HttpError 400 otherwise."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("all") is True:
        return None
    if isinstance(data, dict) and isinstance(data.get("ref"), str):
        return str(data["ref"])
    raise HttpError(HTTPStatus.BAD_REQUEST, 'send {"ref": "<ref>"} for one dead letter or {"all": true} for all')


def _page_of(head: Head) -> tuple[int, int]:
    """The ``offset`` and ``limit`` a page request asks for; HttpError 400 if they are not numbers."""
    query = parse_qs(urlsplit(head.target).query)
    try:
        offset = max(0, int(query.get("offset", ["0"])[0]))
        limit = min(PAGE_MAX, max(1, int(query.get("limit", [str(PAGE)])[0])))
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "offset and limit are whole numbers") from None
    return offset, limit


def _entry(raw: bytes | str) -> DeadEntry:
    return DeadEntry.parse(raw if isinstance(raw, bytes) else raw.encode())


def _unavailable(exc: redis.RedisError) -> HttpError:
    logger.warning("dashboard: Redis is unavailable: %s", exc)
    return HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "Redis is unavailable")
