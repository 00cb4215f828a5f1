"""GETs written at their offsets: a pool of threads fetches and hashes, the calling thread writes."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import TransferError
from . import s3calls as s3
from .client import Requester
from .verify import ObjectInfo, Plan, Span

#: the size of each buffer a fetching thread reads into and the writer writes from. Small
#: enough that the set of them (2 × ``max_concurrency``) stays in the CPU's cache between
#: the read and the write: the kernel's copy into the page cache is most of a download's
#: CPU, and it took half the system time from 256 KiB buffers that it took from 1 MiB ones
#: (512 MiB, 6 rounds: 0.21 against 0.45–0.55 s; 128 KiB 0.23, 64 KiB 0.30)
BUFFER_BYTES = 256 * 1024


class OffsetFetch:
    """The spans of one plan, each GET by a thread that hashes what it fetches, written at their offsets of ``fd``.

    The fetching threads read into buffers of ``BUFFER_BYTES`` lent from a fixed set
    (two per thread) and hand them to the calling thread, which writes each at its offset
    (``os.pwrite``) and lends it again: one writer, as concurrent writes to one file queue
    on its lock (half again the time of a large download on a busy machine). At most
    ``concurrency`` spans are in flight.
    """

    def __init__(self, req: Requester, info: ObjectInfo, plan: Plan, fd: int, concurrency: int) -> None:
        self.req = req
        self.info = info
        self.plan = plan
        self.fd = fd
        self.concurrency = concurrency
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        size = max(1, min(BUFFER_BYTES, info.size)) if plan.whole else BUFFER_BYTES
        for _ in range(2 * concurrency):
            self.free.put(bytearray(size))
        #: (offset, buffer, bytes) to write, or (-1, None, index) once span ``index`` is fetched
        self.written: queue.SimpleQueue[tuple[int, bytearray | None, int]] = queue.SimpleQueue()
        self._upcoming: Iterator[tuple[int, Span]] = iter(enumerate(plan.spans))
        self._running: dict[int, Future[tuple[int, list[bytes]]]] = {}

    def run(self, pool: ThreadPoolExecutor, progress: Callable[[int, int], None]) -> tuple[list[bytes], int]:
        """Fetch and write every span; return the digests of the spans' parts (when the plan takes them) and the bytes fetched."""
        digests: list[list[bytes]] = [[] for _ in self.plan.spans]
        seen = done = 0
        try:
            for _ in range(self.concurrency):
                self._submit_next(pool)
            while self._running:
                offset, buffer, n = self.written.get()
                if buffer is not None:
                    _pwrite_all(self.fd, memoryview(buffer)[:n], offset)
                    self.free.put(buffer)
                    done += n
                    progress(min(done, self.info.size), self.info.size)
                    continue
                got, digests[n] = self._running.pop(n).result()
                seen += got
                self._submit_next(pool)
        except BaseException:
            self.req.cancelled.set()
            for future in self._running.values():
                future.cancel()
            raise
        return [d for span in digests for d in span], seen

    def _submit_next(self, pool: ThreadPoolExecutor) -> None:
        following = next(self._upcoming, None)
        if following is not None:
            self._running[following[0]] = pool.submit(self._fetch, *following)

    def _fetch(self, index: int, span: Span) -> tuple[int, list[bytes]]:
        """In a pool thread: GET ``span`` (retried alone, from its start); return its length and digests."""
        try:
            got, digest = self.req.call("get", lambda: self._get(span))
            if not self.plan.whole and got != span[1] - span[0]:
                raise TransferError(
                    f"s3://{self.req.bucket}/{self.req.key}: range {span} returned {got} bytes",
                    bucket=self.req.bucket,
                    key=self.req.key,
                )
            return got, digest
        finally:
            self.written.put((-1, None, index))

    def _get(self, span: Span) -> tuple[int, list[bytes]]:
        hasher = self.plan.hasher(span)
        offset = [span[0]]

        def consume(buffer: bytearray, n: int) -> None:
            if hasher is not None:
                hasher.feed(memoryview(buffer)[:n])
            self.written.put((offset[0], buffer, n))
            offset[0] += n

        req = self.req
        got = s3.get_object_into(
            req.client,
            req.bucket,
            req.key,
            buffer=self._lend,
            consume=consume,
            if_match=self.info.etag or None,
            byte_range=None if self.plan.whole else (span[0], span[1] - 1),
            limit=req.limiter.down,
        )
        return got, hasher.digests() if hasher is not None else []

    def _lend(self) -> bytearray:
        while True:
            if self.req.cancelled.is_set():
                raise TransferError(
                    f"s3://{self.req.bucket}/{self.req.key}: cancelled", bucket=self.req.bucket, key=self.req.key
                )
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset`` of ``fd`` (``os.pwrite`` may write less than asked)."""
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
