"""One download attempt: ranged GETs in parallel, delivered in order, verified, decoded.

The object's ETag is read first (HEAD); every GET then carries ``If-Match`` so a
replaced object fails the attempt instead of mixing two versions. Ranges are fetched by a
bounded pool and handed over in order, so at most ``max_concurrency + 1`` ranges are in
memory. The stored bytes are checked against the store's size and ETag: the MD5 of the
whole object, or, for a multipart object, the MD5 of each part (part boundaries come from
``HEAD ?partNumber=``), combined as S3 combines them.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import TransferError, VerificationError
from ..settings import TransferSettings
from . import client as s3
from .client import Requester
from .parts import clean_etag, is_plain_md5, md5, multipart_count, multipart_etag

logger = logging.getLogger(__name__)

#: the most parts whose boundaries a download looks up (one HEAD each) to check a
#: multipart ETag; past it, only the size is checked
MAX_PARTS_TO_VERIFY = 10_000


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HEAD says about the object: its stored size, ETag and Content-Encoding."""

    size: int
    etag: str
    content_encoding: str | None
    kms: bool


def head(req: Requester) -> ObjectInfo:
    """Return the object's stored size, ETag and encoding."""
    response = req.call("head", lambda: s3.head_object(req.client, req.bucket, req.key))
    return ObjectInfo(
        size=int(response["ContentLength"]),
        etag=str(response.get("ETag", "")),
        content_encoding=response.get("ContentEncoding") or None,
        kms=str(response.get("ServerSideEncryption", "")).startswith("aws:kms"),
    )


class Checker:
    """Hashes the stored bytes as they stream by and says whether they are what the store holds."""

    def __init__(self, info: ObjectInfo, boundaries: list[int] | None) -> None:
        self.info = info
        self.seen = 0
        self.whole = md5(b"") if boundaries is None and is_plain_md5(info.etag) and not info.kms else None
        self.boundaries = boundaries  # end offsets of each part, when the ETag is a multipart one
        self.part_digests: list[bytes] = []
        self.part = md5(b"") if boundaries else None

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

    def verify(self, req: Requester) -> None:
        where = f"s3://{req.bucket}/{req.key}"
        if self.seen != self.info.size:
            raise VerificationError(f"{where}: got {self.seen} bytes, the store holds {self.info.size}",
                                    bucket=req.bucket, key=req.key)
        if self.whole is not None and self.whole.hexdigest() != clean_etag(self.info.etag):
            raise VerificationError(f"{where}: the MD5 of the bytes received ({self.whole.hexdigest()}) is not "
                                    f"the store's ETag {clean_etag(self.info.etag)}", bucket=req.bucket, key=req.key)
        if self.boundaries is not None:
            got = multipart_etag(self.part_digests)
            if got != clean_etag(self.info.etag):
                raise VerificationError(f"{where}: the parts' MD5s of the bytes received ({got}) do not match the "
                                        f"store's ETag {clean_etag(self.info.etag)}", bucket=req.bucket, key=req.key)


def part_boundaries(req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor) -> list[int] | None:
    """Return each part's end offset of a multipart object (None when the store cannot say)."""
    count = multipart_count(info.etag)
    if count is None or info.kms or count > MAX_PARTS_TO_VERIFY:
        return None

    def part_range(number: int) -> tuple[int, int] | None:
        response = req.call(f"head part {number}", lambda: s3.head_object(req.client, req.bucket, req.key, number))
        if int(response.get("PartsCount") or 0) != count:
            return None
        content_range = str(response.get("ContentRange", ""))  # "bytes 0-5242879/10486760"
        try:
            first, last = content_range.split(" ", 1)[1].split("/", 1)[0].split("-")
            return int(first), int(last) + 1
        except (IndexError, ValueError):
            return None

    ranges = list(pool.map(part_range, range(1, count + 1)))
    if any(r is None for r in ranges):
        logger.debug("no part ranges for bucket=%s key=%s: checking its size only", req.bucket, req.key)
        return None
    ends = [r[1] for r in ranges if r is not None]
    starts = [r[0] for r in ranges if r is not None]
    if starts[0] != 0 or any(starts[i] != ends[i - 1] for i in range(1, count)) or ends[-1] != info.size:
        return None
    return ends


def download_stream(req: Requester, *, settings: TransferSettings, on_start: Callable[[ObjectInfo], None],
                    write: Callable[[bytes | bytearray], Any], progress: Callable[[int, int], None]) -> ObjectInfo:
    """Fetch the object, pass its stored bytes in order to ``write``, verify them; return its info.

    ``on_start(info)`` runs once HEAD has answered, before the first byte is written.
    """
    info = head(req)
    on_start(info)
    with ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="s3po-get") as pool:
        checker = Checker(info, part_boundaries(req, info, pool))
        ranges: list[tuple[int, int] | None]
        if info.size < settings.multipart_threshold_bytes:
            ranges = [None]
        else:
            step = settings.part_size_bytes
            ranges = [(start, min(start + step, info.size) - 1) for start in range(0, info.size, step)]
        etag = info.etag or None

        def fetch(byte_range: tuple[int, int] | None) -> bytearray:
            data = req.call("get", lambda: s3.get_object_bytes(req.client, req.bucket, req.key,
                                                               byte_range=byte_range, if_match=etag))
            if byte_range is not None and len(data) != byte_range[1] - byte_range[0] + 1:
                raise TransferError(f"s3://{req.bucket}/{req.key}: range {byte_range} returned {len(data)} bytes",
                                    bucket=req.bucket, key=req.key)
            return data

        pending: deque[Future[bytearray]] = deque()
        upcoming = iter(ranges)
        try:
            for byte_range in upcoming:
                pending.append(pool.submit(fetch, byte_range))
                if len(pending) >= settings.max_concurrency:
                    break
            while pending:
                data = pending.popleft().result()
                following = next(upcoming, None)
                if following is not None:
                    pending.append(pool.submit(fetch, following))
                checker.feed(data)
                write(data)
                progress(checker.seen, info.size)
                del data
        except BaseException:
            req.cancelled.set()
            for f in pending:
                f.cancel()
            raise
    checker.verify(req)
    return info
