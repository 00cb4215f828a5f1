"""A bounded HTTP/1.1 server: one selector loop reads and writes, a fixed pool of threads answers.

http.server's ThreadingHTTPServer starts a thread per connection: 1,000 idle connections
would be 1,000 threads, with nothing to bound them. Here the threads are fixed at start:

- one loop thread accepts, reads each request whole and writes each answer, never waiting
  on a client;
- ``Limits.workers`` threads answer complete requests (they may wait on Redis), and one more
  answers the urgent ones (health probes), so a probe never queues behind enqueues;
- at most ``Limits.max_connections`` connections are open. When one more arrives, the
  connection that has waited longest for its request is answered 503 with Retry-After and
  closed: an idle or slow connection gives way to a new one, so a probe gets through a
  flood. If every open connection is being answered, the newcomer gets the 503;
- a client has ``Limits.request_timeout_s`` for its whole request (line, headers, body),
  however slowly it trickles it in (slowloris), and as long again to take the answer; a
  request that waited that long for a worker is answered 503 with Retry-After unprocessed
  (its client has most likely given up);
- the request bodies held at once total at most ``Limits.max_buffered_bytes`` (one body
  always fits); beyond it the request is answered 503 with Retry-After.
"""

from __future__ import annotations

import errno
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from enum import Enum
from http import HTTPStatus

from .httpwire import CONTINUE, Admitted, Head, HttpError, Limits, Reply, parse_head

logger = logging.getLogger(__name__)

#: How often the loop looks for clients past their deadline, at the latest.
TICK_S = 0.25
#: Errors of accept() that mean "out of descriptors or memory": stop accepting for a moment
#: instead of spinning on a listening socket that stays readable.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE_S = 0.5
RECV_BYTES = 64 * 1024
#: Unread bytes drained before a close, so the kernel sends FIN, not RST, and the client
#: can read the answer (an RST may discard it).
DRAIN_BYTES = 256 * 1024
SHED_LOG_EVERY_S = 10.0


class _State(Enum):
    READING = "reading"  # the request is arriving (or the next one, on a kept-alive connection)
    WAITING = "waiting"  # read whole, queued for a worker or being answered (no deadline: the app's own)
    WRITING = "writing"  # the answer is going out


class _Connection:
    __slots__ = ("sock", "buffer", "head", "admitted", "state", "deadline", "events", "outgoing", "close_after")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.head: Head | None = None
        self.admitted: Admitted | None = None
        self.state = _State.READING
        self.deadline = deadline
        self.events = 0  # what the selector watches for; 0: not registered
        self.outgoing = memoryview(b"")
        self.close_after = False


_Task = tuple[_Connection, Admitted, bytes, float]
_LISTENER = object()
_WAKE = object()


class BoundedHttpServer:
    """Serves ``listener`` until ``close()``; ``admit`` says what each request head gets."""

    def __init__(
        self,
        listener: socket.socket,
        admit: Callable[[Head], Admitted],
        *,
        server_header: str,
        limits: Limits = Limits(),
        name: str = "s3pod-api",
    ) -> None:
        self.limits = limits
        self.server_header = server_header
        self._admit = admit
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for sock in (listener, self._wake_r, self._wake_w):
            sock.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, _LISTENER)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._connections: dict[_Connection, None] = {}  # in order of arrival: ties go to the oldest
        self._work: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._urgent: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._replies: queue.SimpleQueue[tuple[_Connection, Reply]] = queue.SimpleQueue()
        self._buffered_bytes = 0
        self._accept_paused_until: float | None = None
        self._next_sweep = 0.0
        self._shed = 0
        self._shed_logged_at = float("-inf")
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._serve, name=name, daemon=True)]
        self._threads += [
            threading.Thread(target=self._answer_tasks, args=(self._work,), name=f"{name}-{i}", daemon=True)
            for i in range(limits.workers)
        ]
        self._threads.append(
            threading.Thread(target=self._answer_tasks, args=(self._urgent,), name=f"{name}-urgent", daemon=True)
        )
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop serving, close every connection and the listening socket, end the threads."""
        self._stopping.set()
        self._wake()
        self._threads[0].join(5)
        for _ in range(self.limits.workers):
            self._work.put(None)
        self._urgent.put(None)
        for thread in self._threads[1:]:
            thread.join(5)

    # -- the worker threads -----------------------------------------------------------------

    def _answer_tasks(self, tasks: queue.SimpleQueue[_Task | None]) -> None:
        while (task := tasks.get()) is not None:
            conn, admitted, body, queued_at = task
            if time.monotonic() - queued_at > self.limits.request_timeout_s:
                reply = self.limits.busy().reply()  # its client has most likely given up waiting
            else:
                reply = _answer(admitted, body)
            self._replies.put((conn, reply))
            self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full: the loop is awake already; closed: it has stopped

    # -- the loop thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, events in self._selector.select(timeout=TICK_S):
                    if key.data is _LISTENER:
                        self._accept()
                    elif key.data is _WAKE:
                        _drain(self._wake_r)
                    elif key.data not in self._connections:
                        continue  # closed earlier in this turn (shed to make room)
                    elif events & selectors.EVENT_READ:
                        self._receive(key.data)
                    else:
                        self._flush(key.data)
                self._send_replies()
                self._sweep(time.monotonic())
        except Exception:
            logger.exception("api: the server loop failed; the API no longer answers")
        finally:
            for conn in list(self._connections):
                self._close(conn)
            self._selector.close()
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()

    def _accept(self) -> None:
        for _ in range(64):  # at most this many per turn, so reads and writes go on in a burst
            try:
                sock, _address = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    logger.warning("api: cannot accept connections (%s); pausing %.1fs", exc.strerror, ACCEPT_PAUSE_S)
                    self._selector.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_S
                    return
                continue  # the client gave up before we accepted it (ECONNABORTED and kin)
            sock.setblocking(False)
            if len(self._connections) >= self.limits.max_connections:
                oldest = min(
                    (c for c in self._connections if c.state is _State.READING), key=lambda c: c.deadline, default=None
                )
                if oldest is None:
                    self._shed += 1
                    _last_word(sock, self._encode_last(self.limits.busy().reply()))
                    continue
                self._refuse(oldest, self.limits.busy().reply())
            conn = _Connection(sock, time.monotonic() + self.limits.request_timeout_s)
            self._connections[conn] = None
            self._watch(conn, selectors.EVENT_READ)

    def _receive(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._close(conn)
            return
        conn.buffer += data
        self._advance(conn)

    def _advance(self, conn: _Connection) -> None:
        """Take the next request from ``conn.buffer`` as far as it has arrived."""
        if conn.admitted is None and not self._read_head(conn):
            return
        assert conn.admitted is not None
        size = conn.admitted.body_bytes
        if len(conn.buffer) < size:
            return
        body = bytes(conn.buffer[:size])
        del conn.buffer[:size]
        conn.state = _State.WAITING
        self._watch(conn, 0)
        lane = self._urgent if conn.admitted.urgent else self._work
        lane.put((conn, conn.admitted, body, time.monotonic()))

    def _read_head(self, conn: _Connection) -> bool:
        while conn.buffer.startswith(b"\r\n"):  # ignored before a request line (RFC 9112 §2.2)
            del conn.buffer[:2]
        end = conn.buffer.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self.limits.max_head_bytes:
            if end >= 0 or len(conn.buffer) > self.limits.max_head_bytes:
                self._reply(conn, self.limits.head_too_large().reply())
            return False
        try:
            conn.head = parse_head(bytes(conn.buffer[: end + 4]))
            admitted = self._admit(conn.head)
            self._reserve(admitted.body_bytes)
        except HttpError as exc:
            self._reply(conn, exc.reply())
            return False
        del conn.buffer[: end + 4]
        conn.admitted = admitted
        if conn.head.expects_continue and len(conn.buffer) < admitted.body_bytes:
            try:
                conn.sock.send(CONTINUE)
            except OSError:
                pass  # the client sends its body after a pause anyway
        return True

    def _reserve(self, size: int) -> None:
        if size and self._buffered_bytes and self._buffered_bytes + size > self.limits.max_buffered_bytes:
            raise self.limits.busy()
        self._buffered_bytes += size

    def _send_replies(self) -> None:
        while True:
            try:
                conn, reply = self._replies.get_nowait()
            except queue.Empty:
                return
            if conn in self._connections:
                self._reply(conn, reply)

    def _reply(self, conn: _Connection, reply: Reply) -> None:
        head, admitted = conn.head, conn.admitted
        # A body nobody asked for is left unread: the connection cannot carry another request.
        unread_body = head is not None and admitted is not None and not admitted.body_bytes and head.declares_body
        close = reply.close or head is None or not head.keep_alive or unread_body
        with_body = head is None or head.method != "HEAD"
        data = reply.encode(server=self.server_header, close=close, with_body=with_body)
        if head is not None:
            logger.debug("api %s %s -> %d", head.method, head.path, reply.status)
        conn.outgoing = memoryview(data)
        conn.close_after = close
        conn.state = _State.WRITING
        conn.deadline = time.monotonic() + self.limits.request_timeout_s
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outgoing)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.outgoing = conn.outgoing[sent:]
        if conn.outgoing:
            self._watch(conn, selectors.EVENT_WRITE)
        elif conn.close_after:
            self._close(conn)
        else:  # kept alive: the next request gets a deadline of its own
            self._release(conn)
            conn.state = _State.READING
            conn.deadline = time.monotonic() + self.limits.request_timeout_s
            self._watch(conn, selectors.EVENT_READ)
            if conn.buffer:
                self._advance(conn)

    def _sweep(self, now: float) -> None:
        """Cut off clients past their deadline; resume accepting; log what was shed."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + TICK_S
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._selector.register(self._listener, selectors.EVENT_READ, _LISTENER)
        for conn in [c for c in self._connections if c.state is not _State.WAITING and c.deadline <= now]:
            if conn.state is _State.READING and (conn.buffer or conn.head is not None):
                self._refuse(conn, self.limits.timed_out().reply())
            else:  # an idle kept-alive connection, or a client that does not read its answer
                self._close(conn)
        if self._shed and now >= self._shed_logged_at + SHED_LOG_EVERY_S:
            logger.warning(
                "api: busy, answered %d connection(s) 503 (at most %d open, %d workers)",
                self._shed,
                self.limits.max_connections,
                self.limits.workers,
            )
            self._shed, self._shed_logged_at = 0, now

    # -- bookkeeping -------------------------------------------------------------------------

    def _encode_last(self, reply: Reply) -> bytes:
        return reply.encode(server=self.server_header, close=True)

    def _refuse(self, conn: _Connection, reply: Reply) -> None:
        """Answer ``reply`` in one try, without waiting for a slow reader, and close."""
        if reply.status == HTTPStatus.SERVICE_UNAVAILABLE:
            self._shed += 1
        self._forget(conn)
        _last_word(conn.sock, self._encode_last(reply))

    def _close(self, conn: _Connection) -> None:
        self._forget(conn)
        _drain(conn.sock)
        conn.sock.close()

    def _forget(self, conn: _Connection) -> None:
        self._watch(conn, 0)
        self._connections.pop(conn, None)
        self._release(conn)

    def _release(self, conn: _Connection) -> None:
        if conn.admitted is not None:
            self._buffered_bytes -= conn.admitted.body_bytes
        conn.head = conn.admitted = None

    def _watch(self, conn: _Connection, events: int) -> None:
        if events == conn.events:
            return
        if not conn.events:
            self._selector.register(conn.sock, events, conn)
        elif not events:
            self._selector.unregister(conn.sock)
        else:
            self._selector.modify(conn.sock, events, conn)
        conn.events = events


def _answer(admitted: Admitted, body: bytes) -> Reply:
    try:
        return admitted.answer(body)
    except HttpError as exc:
        return exc.reply()
    except Exception:
        logger.exception("api: answering a request failed")
        return Reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see s3pod's log"}, close=True)


def _drain(sock: socket.socket) -> None:
    left = DRAIN_BYTES
    try:
        while left > 0 and (chunk := sock.recv(min(left, RECV_BYTES))):
            left -= len(chunk)
    except OSError:
        pass  # nothing more to read (BlockingIOError), or the client is gone


def _last_word(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # the client is gone or does not read: the close says the rest
    _drain(sock)
    sock.close()
