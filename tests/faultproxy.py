"""A fault-injecting HTTP proxy on loopback, for putting between s3po and the S3 server.

It forwards every request unchanged (so SigV4 signatures stay valid) unless a rule
matches it; a rule can answer with an S3 error, reset the connection, delay the request,
corrupt its body (or, for a request without one, the body of its answer), or pass it on
and give the client a wrong ETag in the answer, or an answer without its
``x-amz-checksum-*`` headers (a store that ignores flexible checksums). Rules fire a given
number of times, then the traffic flows again::

    with FaultProxy(s3_server.port) as proxy:
        rule = proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=2)
        ...  # point the client at proxy.url
        assert rule.hits == 2
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("error", "reset", "delay", "corrupt", "etag", "no-checksum")


@dataclass
class Rule:
    """Which requests a fault applies to, what it does, and how often (``times=None``: always)."""

    action: str
    method: str | None = None
    path: str | None = None
    query: str | None = None
    #: only requests that carry this header (any value)
    header: str | None = None
    #: also take the ``x-amz-checksum-*`` headers out of the answer (with "etag", say)
    hide_checksum: bool = False
    times: int | None = 1
    status: int = 503
    code: str = "SlowDown"
    delay_s: float = 0.0
    hits: int = 0
    _path_re: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {self.action!r}")
        self._path_re = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str, query: str, headers: list[tuple[str, str]] | None = None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.header is not None and _header(headers or [], self.header) is None:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self._path_re is not None and not self._path_re.search(path):
            return False
        if self.query is not None and self.query not in query:
            return False
        return True


class _Closed(Exception):
    pass


class _Stream:
    """Buffered reads on a socket: lines, exact counts, and up to a delimiter."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise _Closed()
        self.buf += data

    def until(self, delim: bytes, limit: int = 1 << 20) -> bytes:
        while delim not in self.buf:
            if len(self.buf) > limit:
                raise _Closed()
            self._fill()
        head, _, self.buf = self.buf.partition(delim)
        return head + delim

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def rest(self) -> bytes:
        chunks = [self.buf]
        self.buf = b""
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _read_body(stream: _Stream, headers: list[tuple[str, str]]) -> bytes:
    """Return the raw body bytes (chunk framing kept as is)."""
    if (_header(headers, "transfer-encoding") or "").lower() == "chunked":
        parts = []
        while True:
            size_line = stream.until(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:
                    trailer = stream.until(b"\r\n")
                    parts.append(trailer)
                    if trailer == b"\r\n":
                        return b"".join(parts)
            parts.append(stream.exactly(size + 2))
    length = _header(headers, "content-length")
    return stream.exactly(int(length)) if length else b""


class FaultProxy:
    """Forwards HTTP from ``127.0.0.1:<port>`` to the upstream server, applying fault rules."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, str]] = []
        #: the header names (lower-cased) of every request, in the order they came
        self.request_headers: list[set[str]] = []
        #: (method, path, query, body bytes) of every request passed on to the server
        self.forwarded: list[tuple[str, str, str, int]] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_rule(self, action: str, **options: Any) -> Rule:
        """Add a fault: ``action`` is error, reset, delay or corrupt; options narrow and shape it."""
        rule = Rule(action, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def bytes_forwarded(self, method: str = "PUT", query: str | None = None) -> int:
        """Return the body bytes of the ``method`` requests passed on (whose query holds ``query``)."""
        with self._lock:
            return sum(n for m, _p, q, n in self.forwarded if m == method and (query is None or query in q))

    def clear(self) -> None:
        """Drop every rule: traffic flows unchanged again."""
        with self._lock:
            self.rules.clear()

    def start(self) -> FaultProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()
        return self

    def close(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside ----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _pick(self, method: str, path: str, query: str, headers: list[tuple[str, str]]) -> Rule | None:
        with self._lock:
            self.requests.append((method, path, query))
            self.request_headers.append({k.lower() for k, _ in headers})
            for rule in self.rules:
                if rule.matches(method, path, query, headers):
                    rule.hits += 1
                    return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        up_stream: _Stream | None = None
        stream = _Stream(client)
        try:
            while not self._stopping.is_set():
                head = stream.until(b"\r\n\r\n")
                request_line, headers = _parse_head(head)
                method, target, _version = request_line.split(" ", 2)
                path, _, query = target.partition("?")
                if (_header(headers, "expect") or "").lower() == "100-continue":
                    # Answer the client's Expect ourselves; Expect is not signed by SigV4.
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    headers = [(k, v) for k, v in headers if k.lower() != "expect"]
                body = _read_body(stream, headers)
                rule = self._pick(method, path, query, headers)
                if rule is not None and rule.action == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if rule is not None and rule.action == "error":
                    xml = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
                        f"<Message>injected by faultproxy</Message><Resource>{path}</Resource>"
                        f"<RequestId>faultproxy</RequestId></Error>"
                    ).encode()
                    client.sendall(
                        f"HTTP/1.1 {rule.status} Injected\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(xml)}\r\n\r\n".encode()
                        + xml
                    )
                    continue
                if rule is not None and rule.action == "delay":
                    time.sleep(rule.delay_s)
                if rule is not None and rule.action == "corrupt" and body:
                    i = len(body) // 2
                    body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
                raw_head = request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    up_stream = _Stream(upstream)
                assert up_stream is not None
                with self._lock:
                    self.forwarded.append((method, path, query, len(body)))
                upstream.sendall(raw_head.encode("latin-1") + body)
                keep = self._relay_response(
                    up_stream,
                    client,
                    method,
                    wrong_etag=rule is not None and rule.action == "etag",
                    no_checksum=rule is not None and (rule.action == "no-checksum" or rule.hide_checksum),
                    corrupt=rule is not None and rule.action == "corrupt" and not body,
                )
                if not keep:
                    upstream.close()
                    upstream = None
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._conns.discard(client)
            client.close()
            if upstream is not None:
                upstream.close()

    def _relay_response(
        self,
        up: _Stream,
        client: socket.socket,
        method: str,
        wrong_etag: bool = False,
        no_checksum: bool = False,
        corrupt: bool = False,
    ) -> bool:
        """Copy one response to the client (one byte of its body flipped if ``corrupt``).

        Return whether the upstream connection stays open.
        """
        while True:
            head = up.until(b"\r\n\r\n")
            if wrong_etag:
                head = re.sub(rb'(?im)^(etag:\s*)"?[^"\r\n]*"?', rb'\1"00000000000000000000000000000bad"', head)
            if no_checksum:
                head = re.sub(rb"(?im)^x-amz-checksum-[^\r\n]*\r\n", b"", head)
            status_line, headers = _parse_head(head)
            status = int(status_line.split(" ", 2)[1])
            if 100 <= status < 200:
                continue  # interim response; the client was answered already
            break
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif (_header(headers, "transfer-encoding") or "").lower() == "chunked" or _header(headers, "content-length"):
            body = _read_body(up, headers)
            if corrupt and body and (_header(headers, "transfer-encoding") or "").lower() != "chunked":
                i = len(body) // 2
                body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
        else:
            body = up.rest()
            client.sendall(head + body)
            return False
        client.sendall(head + body)
        return (_header(headers, "connection") or "").lower() != "close"


class TcpFaultProxy:
    """A TCP forwarder on loopback (for Redis) that adds latency, resets, cuts and silence.

    Every byte is passed on unchanged unless a fault is on:

    - ``latency_s``: each chunk waits this long before it is passed on, both ways;
    - ``reset_all()``: every open connection is reset now (RST, as a dead peer or a NAT drop);
    - ``cut_after(n, times)``: the next ``times`` connections carrying ``n`` more bytes are
      reset at that point, mid-reply or mid-command;
    - ``silence(True)``: connections stay open but nothing passes (a partition, a stuck
      switch) until ``silence(False)``; what was held is then delivered.

    >>> with TcpFaultProxy(6379) as proxy:          # doctest: +SKIP
    ...     proxy.latency_s = 0.05                  # redis://127.0.0.1:{proxy.port}
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency_s = 0.0
        self.connections = 0
        self.resets = 0
        self._silent = threading.Event()
        self._cut: list[int] = []  # [bytes, times] while a cut is armed
        self._lock = threading.Lock()
        self._pairs: dict[int, tuple[socket.socket, socket.socket, list[int]]] = {}
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> TcpFaultProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="tcpfaultproxy", daemon=True).start()
        return self

    def close(self) -> None:
        self._stopping.set()
        self._silent.clear()
        if self._listener is not None:
            self._listener.close()
        self.reset_all(count=False)

    def __enter__(self) -> TcpFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def silence(self, on: bool) -> None:
        if on:
            self._silent.set()
        else:
            self._silent.clear()

    def cut_after(self, n_bytes: int, times: int = 1) -> None:
        """Reset the next ``times`` connections once each has carried ``n_bytes`` more bytes."""
        with self._lock:
            self._cut = [n_bytes, times]
            for _a, _b, budget in self._pairs.values():
                budget[0] = n_bytes

    def reset_all(self, count: bool = True) -> int:
        """Reset every open connection; return how many."""
        with self._lock:
            pairs = list(self._pairs.values())
            self._pairs.clear()
        for a, b, _ in pairs:
            for s in (a, b):
                _reset(s)
        if count:
            self.resets += len(pairs)
        return len(pairs)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self.connections += 1
                budget = [self._cut[0] if self._cut and self._cut[1] > 0 else -1]
                self._pairs[id(client)] = (client, upstream, budget)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, id(client)), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: int) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                while self._silent.is_set() and not self._stopping.is_set():
                    time.sleep(0.02)
                if self.latency_s:
                    time.sleep(self.latency_s)
                if self._spend(pair, data, dst):
                    return
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            gone = self._pairs.pop(pair, None)
        if gone is not None:
            for s in gone[:2]:
                try:
                    s.close()
                except OSError:
                    pass

    def _spend(self, pair: int, data: bytes, dst: socket.socket) -> bool:
        """Charge ``data`` to the connection's cut budget; cut it (True) when the budget runs out."""
        with self._lock:
            entry = self._pairs.get(pair)
            if entry is None or entry[2][0] < 0:
                return False
            budget = entry[2]
            if len(data) < budget[0]:
                budget[0] -= len(data)
                return False
            head = data[: budget[0]]
            self._pairs.pop(pair, None)
            if self._cut:
                self._cut[1] -= 1
                if self._cut[1] <= 0:
                    self._cut = []
                    for _a, _b, other in self._pairs.values():
                        other[0] = -1
            self.resets += 1
        try:
            dst.sendall(head)
        except OSError:
            pass
        for s in entry[:2]:
            _reset(s)
        return True


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (linger 0), waking any thread blocked reading it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # a recv blocked in another thread returns; no FIN is sent
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
