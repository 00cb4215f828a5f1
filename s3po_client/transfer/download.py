"""One download attempt: ranged GETs in parallel, every byte verified, written where it belongs.

HEAD gives the object's size, ETag and encoding; every GET then carries ``If-Match``, so a
replaced object fails the attempt instead of mixing two versions. The stored bytes are
checked against the store's size and ETag: the MD5 of the whole object, or, for a
multipart object, the MD5 of each part combined as S3 combines them.

A multipart object comes as one ranged GET per part, each part hashed by the thread that
fetched it. The part boundaries come from one ``HEAD ?partNumber=1``: the first part's
size and the part count, every part but the last taken to have that size (what boto3, the
AWS CLI, rclone and s3po write when the size is known). A guess that does not fit the
object's size is not used; one that fits but is wrong shows as a multipart ETag that does
not match, and then each part's true range is asked for (a HEAD each) and the bytes are
checked again: the verdict never rests on the guess.

Where the bytes go is the caller's ``Target``:

- one with a file descriptor (``download_file`` of bytes kept as stored) gets each range
  written at its offset (``os.pwrite``) by the thread that fetched it, as it arrives;
  each thread holds one read buffer. A wrong guess is checked again by reading the file.
- any other (decoding, ``download_bytes``, ``download_fileobj``) gets the ranges in order:
  at most ``max_concurrency + 1`` are in memory. A wrong guess starts it again from the
  first byte (``Target.restart``); a target that cannot restart is never given a guess.

Parts larger than ``whole_part_limit`` are fetched as ranges of ``part_size_bytes``,
hashed in order as they are handed over, so memory stays bounded whatever the part size.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import TransferError, VerificationError
from ..settings import MiB, TransferSettings
from . import s3calls as s3
from .parts import clean_etag, is_plain_md5, md5, multipart_count, multipart_etag
from .s3calls import READ_CHUNK_BYTES, Requester

logger = logging.getLogger(__name__)

#: the most parts whose boundaries a download looks up (one HEAD each) to check a
#: multipart ETag; past it, only the size is checked
MAX_PARTS_TO_VERIFY = 10_000

#: parts up to this size are fetched one GET each when written at their offsets (memory:
#: one read buffer a thread, whatever the part size); larger ones as ranges of ``part_size_bytes``
MAX_WHOLE_PART_BYTES = 64 * MiB

Span = tuple[int, int]  # [start, end) of stored bytes


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HEAD says about the object: its stored size, ETag and Content-Encoding."""

    size: int
    etag: str
    content_encoding: str | None
    kms: bool


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
class Parts:
    """A multipart object's parts: each one's end offset; ``guessed`` when only the first was looked up."""

    ends: tuple[int, ...]
    guessed: bool = False

    def spans(self) -> list[Span]:
        return list(zip((0,) + self.ends[:-1], self.ends))

    @property
    def largest(self) -> int:
        return max(end - start for start, end in self.spans())


def head(req: Requester) -> ObjectInfo:
    """Return the object's stored size, ETag and encoding."""
    response = req.call("head", lambda: s3.head_object(req.client, req.bucket, req.key))
    return ObjectInfo(
        size=int(response["ContentLength"]),
        etag=str(response.get("ETag", "")),
        content_encoding=response.get("ContentEncoding") or None,
        kms=str(response.get("ServerSideEncryption", "")).startswith("aws:kms"),
    )


def part_range(req: Requester, number: int, count: int) -> Span | None:
    """Return the stored bytes of part ``number`` (``HEAD ?partNumber=``); None when the store cannot say."""
    response = req.call(f"head part {number}", lambda: s3.head_object(req.client, req.bucket, req.key, number))
    if int(response.get("PartsCount") or 0) != count:
        return None
    # "bytes 0-5242879/10486760"; botocore before 1.37 does not parse it out of a HEAD's answer
    content_range = str(
        response.get("ContentRange")
        or response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("content-range", "")
    )
    try:
        first, last = content_range.split(" ", 1)[1].split("/", 1)[0].split("-")
        return int(first), int(last) + 1
    except (IndexError, ValueError):
        return None


def find_parts(req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor, *, guess: bool) -> Parts | None:
    """Return the parts of a multipart object whose ETag can be checked, else None (only its size is checked).

    With ``guess``, one HEAD: the parts are taken to have the first one's size, when that
    fits the object's size. Otherwise, or when it does not fit, one HEAD per part.
    """
    count = multipart_count(info.etag)
    if count is None or info.kms or count > MAX_PARTS_TO_VERIFY:
        return None
    if count == 1:
        return Parts((info.size,))
    if guess:
        first = part_range(req, 1, count)
        if first is None:
            logger.debug("no part ranges for bucket=%s key=%s: checking its size only", req.bucket, req.key)
            return None
        step = first[1] - first[0]
        if first[0] == 0 and step > 0 and (count - 1) * step < info.size <= count * step:
            return Parts(tuple(min(step * n, info.size) for n in range(1, count + 1)), guessed=True)
    return learn_parts(req, info, pool, count)


def learn_parts(req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor, count: int) -> Parts | None:
    """Return every part's true range, one HEAD each (None when the store cannot say, or they do not tile the object)."""
    ranges = list(pool.map(lambda number: part_range(req, number, count), range(1, count + 1)))
    if any(r is None for r in ranges):
        logger.debug("no part ranges for bucket=%s key=%s: checking its size only", req.bucket, req.key)
        return None
    spans = [r for r in ranges if r is not None]
    if spans[0][0] != 0 or any(spans[i][0] != spans[i - 1][1] for i in range(1, count)) or spans[-1][1] != info.size:
        return None
    return Parts(tuple(end for _, end in spans))


class Checker:
    """Hashes stored bytes handed over in order, and says whether they are what the store holds.

    For ranges that do not each hold one whole part (or the whole object): ranges of a
    single-PUT object, or of parts too large to fetch whole.
    """

    def __init__(self, info: ObjectInfo, parts: Parts | None) -> None:
        self.info = info
        self.seen = 0
        self.whole = md5(b"") if parts is None and is_plain_md5(info.etag) and not info.kms else None
        self.boundaries = None if parts is None else parts.ends
        self.part_digests: list[bytes] = []
        self.part = md5(b"") if parts is not None else None

    def feed(self, data: bytes | bytearray) -> None:
        if self.whole is not None:
            self.whole.update(data)
        if self.part is not None and self.boundaries is not None:
            view = memoryview(data)
            offset = self.seen
            while view:
                end = self.boundaries[len(self.part_digests)] if len(self.part_digests) < len(self.boundaries) else None
                take = len(view) if end is None else min(len(view), end - offset)
                self.part.update(view[:take])
                offset += take
                view = view[take:]
                if end is not None and offset == end:
                    self.part_digests.append(self.part.digest())
                    self.part = md5(b"")
        self.seen += len(data)

    def hexdigest(self) -> str | None:
        """The checksum the ETag should be: the whole MD5, or the parts' (None: only the size is checked)."""
        if self.whole is not None:
            return self.whole.hexdigest()
        return None if self.boundaries is None else multipart_etag(self.part_digests)


@dataclass(frozen=True, slots=True)
class Plan:
    """The GETs of one attempt, and how their bytes are checked."""

    spans: list[Span]
    #: what the MD5 of each span, taken by the thread that fetched it, makes: ``"parts"``,
    #: each span being one part; ``"whole"``, the one span being the whole object; None
    #: when the spans are not checked one by one
    per_span: Literal["parts", "whole"] | None
    #: the spans are hashed in order as they are handed over (a ``Checker``): they do not
    #: each hold one part, yet the ETag needs the parts' or the whole object's MD5
    in_order: bool
    #: one GET of the whole object, without a Range
    whole: bool = False

    def checksum(self, digests: list[bytes]) -> str | None:
        """The ETag the spans' MD5s make (None when they are not checked one by one)."""
        if self.per_span == "parts":
            return multipart_etag(digests)
        return digests[0].hex() if self.per_span == "whole" else None


def make_plan(info: ObjectInfo, parts: Parts | None, settings: TransferSettings, *, whole_part_limit: int) -> Plan:
    """Return the GETs for the object: one per part when its parts are known and at most
    ``whole_part_limit``, else one GET when it is small, else ranges of ``part_size_bytes``."""
    plain = parts is None and is_plain_md5(info.etag) and not info.kms
    if parts is not None and len(parts.ends) > 1 and parts.largest <= whole_part_limit:
        return Plan(parts.spans(), per_span="parts", in_order=False)
    if info.size < settings.multipart_threshold_bytes:
        # the MD5 of one GET is the whole object's, and the one part's of a one-part upload
        return Plan(
            [(0, info.size)],
            per_span="whole" if plain else "parts" if parts is not None else None,
            in_order=False,
            whole=True,
        )
    step = settings.part_size_bytes
    spans = [(start, min(start + step, info.size)) for start in range(0, info.size, step)]
    return Plan(spans, per_span=None, in_order=plain or parts is not None)


def download_stream(
    req: Requester,
    *,
    settings: TransferSettings,
    on_start: Callable[[ObjectInfo], Target],
    progress: Callable[[int, int], None],
) -> ObjectInfo:
    """Fetch the object into the target ``on_start(info)`` returns, verify it; return its info.

    ``on_start`` runs once HEAD has answered, before the first byte is fetched.
    ``progress(done, total)`` runs in the calling thread after each span; an exception it
    raises (even a ``BaseException``) cancels the spans not yet fetched and propagates.
    """
    info = head(req)
    target = on_start(info)
    positional = target.fd is not None
    # written at their offsets, parts cost no memory of their own; handed over in order,
    # each is held whole until its turn
    limit = MAX_WHOLE_PART_BYTES if positional else 2 * settings.part_size_bytes
    with ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="s3po-get") as pool:
        try:
            parts = find_parts(req, info, pool, guess=positional or target.restartable)
            while True:
                plan = make_plan(info, parts, settings, whole_part_limit=limit)
                at_offsets = positional and not plan.in_order
                if at_offsets:
                    got = _fetch_at_offsets(req, info, plan, target, settings, pool, progress)
                else:
                    got = _fetch_in_order(req, info, plan, parts, target, settings, pool, progress)
                if got is None or got == clean_etag(info.etag) or parts is None or not parts.guessed:
                    break
                # The parts were taken to be of one size: learn their true ranges and check again.
                learned = learn_parts(req, info, pool, len(parts.ends))
                if learned is None or learned.ends == parts.ends:
                    break
                logger.debug("parts of bucket=%s key=%s are not of one size: checking again", req.bucket, req.key)
                parts = learned
                if at_offsets:
                    got = multipart_etag(_hash_file(target, parts, pool))
                    break
                target.restart()
        except BaseException:
            req.cancelled.set()
            raise
    if got is not None and got != clean_etag(info.etag):
        raise VerificationError(
            f"s3://{req.bucket}/{req.key}: the checksum of the bytes received ({got}) is not "
            f"the store's ETag {clean_etag(info.etag)}",
            bucket=req.bucket,
            key=req.key,
        )
    return info


def _fetch_at_offsets(
    req: Requester,
    info: ObjectInfo,
    plan: Plan,
    target: Target,
    settings: TransferSettings,
    pool: ThreadPoolExecutor,
    progress: Callable[[int, int], None],
) -> str | None:
    """GET each span in ``pool``, each thread hashing what it fetches; write it at its offset here; return the checksum.

    The fetching threads read into buffers of ``READ_CHUNK_BYTES`` lent from a fixed set
    (two per thread) and hand them to the calling thread, which writes each at its offset
    (``os.pwrite``) and lends it again: one writer, as concurrent writes to one file queue
    on its lock (measured: half again the time of a 1 GiB download on a busy machine).
    At most ``max_concurrency`` spans are in flight.
    """
    fd = target.fd
    assert fd is not None
    etag = info.etag or None
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    size = max(1, min(READ_CHUNK_BYTES, info.size)) if plan.whole else READ_CHUNK_BYTES
    for _ in range(2 * settings.max_concurrency):
        free.put(bytearray(size))
    #: (offset, buffer, bytes) to write, or (-1, None, index) once span ``index`` is fetched
    written: queue.SimpleQueue[tuple[int, bytearray | None, int]] = queue.SimpleQueue()
    cancelled = TransferError(f"s3://{req.bucket}/{req.key}: cancelled", bucket=req.bucket, key=req.key)

    def lend() -> bytearray:
        while True:
            if req.cancelled.is_set():
                raise cancelled
            try:
                return free.get(timeout=0.1)
            except queue.Empty:
                continue

    def fetch(index: int, span: Span) -> tuple[int, bytes]:
        try:

            def once() -> tuple[int, bytes]:  # a retry starts the span again
                digest = md5(b"")
                offset = span[0]

                def consume(buffer: bytearray, n: int) -> None:
                    nonlocal offset
                    if plan.per_span is not None:
                        digest.update(memoryview(buffer)[:n])
                    written.put((offset, buffer, n))
                    offset += n

                got = s3.get_object_into(
                    req.client,
                    req.bucket,
                    req.key,
                    buffer=lend,
                    consume=consume,
                    if_match=etag,
                    byte_range=None if plan.whole else (span[0], span[1] - 1),
                )
                return got, digest.digest()

            got, digest = req.call("get", once)
            if not plan.whole and got != span[1] - span[0]:
                raise TransferError(
                    f"s3://{req.bucket}/{req.key}: range {span} returned {got} bytes", bucket=req.bucket, key=req.key
                )
            return got, digest
        finally:
            written.put((-1, None, index))

    digests = [b""] * len(plan.spans)
    seen = done = 0
    upcoming = iter(enumerate(plan.spans))
    running: dict[int, Future[tuple[int, bytes]]] = {}

    def submit_next() -> None:
        following = next(upcoming, None)
        if following is not None:
            running[following[0]] = pool.submit(fetch, *following)

    try:
        for _ in range(settings.max_concurrency):
            submit_next()
        while running:
            offset, buffer, n = written.get()
            if buffer is not None:
                _pwrite_all(fd, memoryview(buffer)[:n], offset)
                free.put(buffer)
                done += n
                progress(min(done, info.size), info.size)
                continue
            got, digests[n] = running.pop(n).result()
            seen += got
            submit_next()
    except BaseException:
        req.cancelled.set()
        for future in running.values():
            future.cancel()
        raise
    _check_size(req, info, seen)
    return plan.checksum(digests)


def _fetch_in_order(
    req: Requester,
    info: ObjectInfo,
    plan: Plan,
    parts: Parts | None,
    target: Target,
    settings: TransferSettings,
    pool: ThreadPoolExecutor,
    progress: Callable[[int, int], None],
) -> str | None:
    """GET the spans in ``pool`` and hand them to ``target.write`` in order; return the checksum.

    At most ``max_concurrency`` spans are fetched ahead of the one being written.
    """
    etag = info.etag or None
    checker = Checker(info, parts) if plan.in_order else None

    def fetch(span: Span) -> tuple[bytearray, bytes]:
        byte_range = None if plan.whole else (span[0], span[1] - 1)
        data = req.call(
            "get", lambda: s3.get_object_bytes(req.client, req.bucket, req.key, byte_range=byte_range, if_match=etag)
        )
        if byte_range is not None and len(data) != span[1] - span[0]:
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: range {byte_range} returned {len(data)} bytes",
                bucket=req.bucket,
                key=req.key,
            )
        if plan.per_span is None:
            return data, b""
        digest = md5(b"")
        digest.update(data)
        return data, digest.digest()

    digests: list[bytes] = []
    seen = 0
    pending: deque[Future[tuple[bytearray, bytes]]] = deque()
    upcoming = iter(plan.spans)
    try:
        for span in upcoming:
            pending.append(pool.submit(fetch, span))
            if len(pending) >= settings.max_concurrency:
                break
        while pending:
            data, digest = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:
                pending.append(pool.submit(fetch, following))
            digests.append(digest)
            if checker is not None:
                checker.feed(data)
            target.write(data)
            seen += len(data)
            progress(seen, info.size)
            del data
    except BaseException:
        req.cancelled.set()
        for future in pending:
            future.cancel()
        raise
    _check_size(req, info, seen)
    return checker.hexdigest() if checker is not None else plan.checksum(digests)


def _check_size(req: Requester, info: ObjectInfo, seen: int) -> None:
    if seen != info.size:
        raise VerificationError(
            f"s3://{req.bucket}/{req.key}: got {seen} bytes, the store holds {info.size}",
            bucket=req.bucket,
            key=req.key,
        )


def _hash_file(target: Target, parts: Parts, pool: ThreadPoolExecutor) -> list[bytes]:
    """Return the MD5 of each part of the target's file, read back in ``pool``."""
    fd = target.fd
    assert fd is not None

    def digest(span: Span) -> bytes:
        hashed = md5(b"")
        buffer = bytearray(READ_CHUNK_BYTES)
        view = memoryview(buffer)
        offset = span[0]
        while offset < span[1]:
            n = os.preadv(fd, [view[: min(len(view), span[1] - offset)]], offset)
            if n == 0:
                raise TransferError("the downloaded file is shorter than the bytes written to it")
            hashed.update(view[:n])
            offset += n
        return hashed.digest()

    return list(pool.map(digest, parts.spans()))


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset`` of ``fd`` (``os.pwrite`` may write less than asked)."""
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


__all__ = ["ObjectInfo", "Target", "download_stream"]
