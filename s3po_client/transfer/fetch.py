"""One download attempt: ranged GETs in parallel, every byte checked, written where it belongs.

HEAD gives the object's size, ETag, encoding and checksums (:mod:`.verify` chooses what
the bytes are checked against); every GET then carries ``If-Match``, so a replaced object
fails the attempt instead of mixing two versions. A multipart object whose parts are
known comes as ranged GETs of whole parts, each part hashed by the thread that fetched it.

Where the bytes go is the caller's ``Target``:

- one with a file descriptor (``download_file`` of bytes kept as stored) gets each range
  written at its offset (``os.pwrite``), as it arrives, from the read buffers lent to the
  threads (:mod:`.offsets`); a GET takes several whole parts (``SPAN_BYTES``). A wrong
  guess of the part ranges is checked again by reading the file.
- any other (decoding, ``download_bytes``, ``download_fileobj``) gets the ranges in order,
  one part a GET: at most ``max_concurrency + 1`` are in memory. A wrong guess starts it
  again from the first byte (``Target.restart``); a target that cannot restart is never
  given a guess.

Parts larger than ``whole_part_limit`` are fetched as ranges of ``part_size_bytes``,
hashed in order as they are handed over, so memory stays bounded whatever the part size.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..errors import TransferError, VerificationError
from ..settings import MiB, TransferSettings
from . import s3calls as s3
from .client import Requester
from .offsets import OffsetFetch
from .s3calls import READ_CHUNK_BYTES
from .verify import Check, Checker, ObjectInfo, Parts, Plan, Span, Verified, choose_check, head, learn_parts, make_plan

logger = logging.getLogger(__name__)

#: parts up to this size are fetched whole when written at their offsets (memory: the
#: read buffers a thread holds, whatever the part size); larger ones as ranges of ``part_size_bytes``
MAX_WHOLE_PART_BYTES = 64 * MiB

#: written at their offsets, consecutive whole parts go as many to a GET as fit in this,
#: and in a twice ``max_concurrency``-th of the object (so every thread has GETs to do):
#: each GET costs about 2 ms of client CPU (botocore builds, signs and parses it), so 1 GiB
#: in 8 MiB parts took 0.35 user CPU-s one GET a part and 0.13 four parts a GET (6 rounds)
SPAN_BYTES = 32 * MiB

Progress = Callable[[int, int], None]


class Target(Protocol):
    """Where one attempt puts the stored bytes."""

    #: a descriptor the bytes may be written to at their offsets from any thread
    #: (``os.pwrite``), and read back from; None: they go through ``write``, in order
    fd: int | None
    #: whether ``restart`` can drop what was written
    restartable: bool

    def write(self, data: bytearray) -> object:
        """Take the next stored bytes, in order."""

    def restart(self) -> None:
        """Drop every byte written so far: the stored bytes follow again from the first."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one attempt fetched: the object as HEAD described it, and what its bytes were checked against."""

    info: ObjectInfo
    verified: Verified


def download_stream(
    req: Requester, *, settings: TransferSettings, on_start: Callable[[ObjectInfo], Target], progress: Progress
) -> Fetched:
    """Fetch the object into the target ``on_start(info)`` returns, verify it; return what was checked.

    ``on_start`` runs once HEAD has answered, before the first byte is fetched.
    ``progress(done, total)`` runs in the calling thread after each span; an exception it
    raises (even a ``BaseException``) cancels the spans not yet fetched and propagates.
    """
    info = head(req)
    target = on_start(info)
    with ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="s3po-get") as pool:
        try:
            check, parts = choose_check(req, info, pool, guess=target.fd is not None or target.restartable)
            got = _Attempt(req, info, target, settings, pool, progress).run(check, parts)
        except BaseException:
            req.cancelled.set()
            raise
    if got is not None and not check.holds(got):
        raise VerificationError(
            f"s3://{req.bucket}/{req.key}: the checksum of the bytes received ({got}) is not "
            f"the store's {check.label} {check.expected}",
            bucket=req.bucket,
            key=req.key,
        )
    return Fetched(info, check.verified)


@dataclass
class _Attempt:
    """The GETs of one attempt, and the value their bytes make for the check chosen."""

    req: Requester
    info: ObjectInfo
    target: Target
    settings: TransferSettings
    pool: ThreadPoolExecutor
    progress: Progress

    def run(self, check: Check, parts: Parts | None) -> str | None:
        """Fetch everything; when guessed part ranges prove wrong, learn them and check again."""
        positional = self.target.fd is not None
        # written at their offsets, parts cost no memory of their own; handed over in order,
        # each is held whole until its turn
        limit = MAX_WHOLE_PART_BYTES if positional else 2 * self.settings.part_size_bytes
        # handed over in order, each span is held whole: one part each
        span_bytes = min(SPAN_BYTES, self.info.size // (2 * self.settings.max_concurrency)) if positional else 0
        while True:
            plan = make_plan(
                check,
                self.info,
                parts,
                self.settings,
                whole_part_limit=limit,
                span_bytes=span_bytes,
            )
            at_offsets = positional and not plan.in_order
            got = self._at_offsets(plan) if at_offsets else self._in_order(plan, parts)
            if got is None or check.holds(got) or parts is None or not parts.guessed:
                return got
            learned = learn_parts(self.req, self.info, self.pool, len(parts.ends))
            if learned is None or learned.ends == parts.ends:
                return got
            logger.debug("parts of bucket=%s key=%s are not of one size: checking again", self.req.bucket, self.req.key)
            parts = learned
            if at_offsets:
                return check.of_parts(self._hash_file(check, parts))
            self.target.restart()

    def _at_offsets(self, plan: Plan) -> str | None:
        fd = self.target.fd
        assert fd is not None
        fetch = OffsetFetch(self.req, self.info, plan, fd, self.settings.max_concurrency)
        digests, seen = fetch.run(self.pool, self.progress)
        self._check_size(seen)
        return plan.value(digests)

    def _in_order(self, plan: Plan, parts: Parts | None) -> str | None:
        """GET the spans in the pool and hand them to ``target.write`` in order; return the value.

        At most ``max_concurrency`` spans are fetched ahead of the one being written.
        """
        checker = Checker(plan.check, parts) if plan.in_order else None
        digests: list[bytes] = []
        seen = 0
        pending: deque[Future[tuple[bytearray, list[bytes]]]] = deque()
        upcoming = iter(plan.spans)
        try:
            for span in upcoming:
                pending.append(self.pool.submit(self._get, plan, span))
                if len(pending) >= self.settings.max_concurrency:
                    break
            while pending:
                data, span_digests = pending.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    pending.append(self.pool.submit(self._get, plan, following))
                digests += span_digests
                if checker is not None:
                    checker.feed(data)
                self.target.write(data)
                seen += len(data)
                self.progress(seen, self.info.size)
                del data
        except BaseException:
            self.req.cancelled.set()
            for future in pending:
                future.cancel()
            raise
        self._check_size(seen)
        return checker.value() if checker is not None else plan.value(digests)

    def _get(self, plan: Plan, span: Span) -> tuple[bytearray, list[bytes]]:
        """GET one span whole; return its bytes and, when the plan checks spans one by one, their parts' digests."""
        req = self.req
        byte_range = None if plan.whole else (span[0], span[1] - 1)
        etag = self.info.etag or None
        data = req.call(
            "get",
            lambda: s3.get_object_bytes(
                req.client, req.bucket, req.key, byte_range=byte_range, if_match=etag, limit=req.limiter.down
            ),
        )
        if byte_range is not None and len(data) != span[1] - span[0]:
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: range {byte_range} returned {len(data)} bytes",
                bucket=req.bucket,
                key=req.key,
            )
        hasher = plan.hasher(span)
        if hasher is None:
            return data, []
        hasher.feed(data)
        return data, hasher.digests()

    def _check_size(self, seen: int) -> None:
        if seen != self.info.size:
            raise VerificationError(
                f"s3://{self.req.bucket}/{self.req.key}: got {seen} bytes, the store holds {self.info.size}",
                bucket=self.req.bucket,
                key=self.req.key,
            )

    def _hash_file(self, check: Check, parts: Parts) -> list[bytes]:
        """Return the digest of each part of the target's file, read back in the pool."""
        fd = self.target.fd
        assert fd is not None

        def digest(span: Span) -> bytes:
            hashed = check.new()
            view = memoryview(bytearray(READ_CHUNK_BYTES))
            offset = span[0]
            while offset < span[1]:
                n = os.preadv(fd, [view[: min(len(view), span[1] - offset)]], offset)
                if n == 0:
                    raise TransferError("the downloaded file is shorter than the bytes written to it")
                hashed.update(view[:n])
                offset += n
            return hashed.digest()

        return list(self.pool.map(digest, parts.spans()))


__all__ = ["Fetched", "Target", "download_stream"]
