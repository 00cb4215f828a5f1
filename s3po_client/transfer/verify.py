"""What a download checks its bytes against, and how its GETs are planned so they can be.

HEAD, asked with ``x-amz-checksum-mode: ENABLED``, gives the object's size, ETag and the
checksums the store keeps. The bytes are checked against the first of these that holds:

=====================  ===========================================================
``crc32``              a CRC32 of the whole object
``crc32-composite``    a multipart CRC32: the CRC32 of its parts' CRC32s (part ranges needed)
``md5``                the ETag of a single-PUT object: the MD5 of its bytes
``md5-composite``      a multipart ETag: the MD5 of its parts' MD5s (part ranges needed)
``sha1``, ``sha256``   a full-object checksum of that algorithm
``size``               nothing else: only the size is checked
=====================  ===========================================================

A CRC32 comes first because it costs the least: ISA-L's takes about 0.04 CPU-s a GiB,
an MD5 1.4 (both catch any damage on the way; neither is asked to resist forgery). An
ETag is no MD5 under SSE-KMS; s3po's uploads store a CRC32 by default (as boto3's do
since 1.36), so such an object is still checked byte for byte.

The part boundaries come from one ``HEAD ?partNumber=1``: the first part's size and the
part count, every part but the last taken to have that size (what boto3, the AWS CLI,
rclone and s3po write when the size is known). A guess that does not fit the object's
size is not used; one that fits but is wrong shows as a composite checksum that does not
match, and then each part's true range is asked for (a HEAD each) and the bytes are
checked again: the verdict never rests on the guess.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

from isal import isal_zlib

from ..settings import TransferSettings
from . import s3calls as s3
from .client import Requester
from .parts import b64, clean_etag, composite_count, composite_crc32, is_plain_md5, multipart_count, multipart_etag

logger = logging.getLogger(__name__)

#: what a download verified: the names its result and ``s3po download --json`` give
Verified = Literal["md5", "md5-composite", "crc32", "crc32-composite", "sha256", "sha1", "size"]

#: the most parts whose boundaries a download looks up (one HEAD each) to check a
#: composite checksum; past it, another check (or only the size) is used
MAX_PARTS_TO_VERIFY = 10_000

#: the full-object checksums a download computes: HEAD's field for each
_FULL_OBJECT: tuple[tuple[Verified, str], ...] = (
    ("crc32", "ChecksumCRC32"),
    ("sha256", "ChecksumSHA256"),
    ("sha1", "ChecksumSHA1"),
)

Span = tuple[int, int]  # [start, end) of stored bytes


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HEAD says about the object: its stored size, ETag, Content-Encoding and checksums."""

    size: int
    etag: str
    content_encoding: str | None
    kms: bool
    #: algorithm → the store's checksum, base64 (``-N`` after a composite one)
    checksums: dict[str, str] = field(default_factory=dict)


def head(req: Requester) -> ObjectInfo:
    """Return the object's stored size, ETag, encoding and checksums."""
    response = req.call("head", lambda: s3.head_object(req.client, req.bucket, req.key, checksums=True))
    return ObjectInfo(
        size=int(response["ContentLength"]),
        etag=str(response.get("ETag", "")),
        content_encoding=response.get("ContentEncoding") or None,
        kms=str(response.get("ServerSideEncryption", "")).startswith("aws:kms"),
        checksums={name: str(response[f]) for name, f in _FULL_OBJECT if response.get(f)},
    )


class Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    """ISA-L's CRC32 (zlib's, six times faster) behind hashlib's interface; ``digest()`` is big-endian, as S3 gives it."""

    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self.value = isal_zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class Check:
    """One way to verify the object's bytes: ``verified`` names it, ``expected`` is the store's value.

    >>> check = Check("crc32", "NhCmhg==")
    >>> hashed = check.new(); hashed.update(b"hello")
    >>> check.holds(check.of_whole(hashed.digest()))
    True
    """

    verified: Verified
    expected: str = ""

    @property
    def algorithm(self) -> str | None:
        return None if self.verified == "size" else self.verified.split("-")[0]

    @property
    def composite(self) -> bool:
        """Whether the value combines the parts' checksums (then the part ranges are needed)."""
        return self.verified.endswith("-composite")

    @property
    def label(self) -> str:
        return "ETag" if self.algorithm == "md5" else (self.algorithm or "size").upper()

    def new(self) -> Hash:
        if self.algorithm == "crc32":
            return _Crc32()
        return hashlib.new(self.algorithm or "md5", usedforsecurity=False)

    def of_whole(self, digest: bytes) -> str:
        """The value the store gives for bytes whose digest is ``digest``."""
        return digest.hex() if self.algorithm == "md5" else b64(digest)

    def of_parts(self, digests: list[bytes]) -> str:
        """The composite value of parts whose digests are ``digests``."""
        if self.algorithm == "md5":
            return multipart_etag(digests)
        return composite_crc32(b64(d) for d in digests)

    def holds(self, got: str) -> bool:
        return got == (clean_etag(self.expected) if self.algorithm == "md5" else self.expected)


def checks_for(info: ObjectInfo) -> list[Check]:
    """The checks the object allows, cheapest first; a composite one holds only once its parts are found."""
    checks: list[Check] = []
    crc32 = info.checksums.get("crc32", "")
    if crc32:
        checks.append(Check("crc32" if composite_count(crc32) is None else "crc32-composite", crc32))
    etag = clean_etag(info.etag)
    if not info.kms and is_plain_md5(etag):
        checks.append(Check("md5", etag))
    elif not info.kms and multipart_count(etag) is not None:
        checks.append(Check("md5-composite", etag))
    for algorithm in ("sha1", "sha256"):
        value = info.checksums.get(algorithm, "")
        if value and composite_count(value) is None:
            checks.append(Check(algorithm, value))
    checks.append(Check("size"))
    return checks


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


def choose_check(
    req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor, *, guess: bool
) -> tuple[Check, Parts | None]:
    """Return the best check the object allows, with its parts when that check is a composite one."""
    found: dict[int, Parts | None] = {}  # by part count: a CRC32's and an ETag's are looked up once
    for check in checks_for(info):
        if not check.composite:
            return check, None
        count = composite_count(check.expected) or 0
        if count not in found:
            found[count] = find_parts(req, info, pool, count, guess=guess)
        if found[count] is not None:
            return check, found[count]
    raise AssertionError("checks_for always ends with the size")


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


def find_parts(req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor, count: int, *, guess: bool) -> Parts | None:
    """Return the ``count`` parts of a multipart object, else None (they cannot be known).

    With ``guess``, one HEAD: the parts are taken to have the first one's size, when that
    fits the object's size. Otherwise, or when it does not fit, one HEAD per part.
    """
    if count < 1 or count > MAX_PARTS_TO_VERIFY:
        return None
    if count == 1:
        return Parts((info.size,))
    if guess:
        first = part_range(req, 1, count)
        if first is None:
            logger.debug("no part ranges for bucket=%s key=%s", req.bucket, req.key)
            return None
        step = first[1] - first[0]
        if first[0] == 0 and step > 0 and (count - 1) * step < info.size <= count * step:
            return Parts(tuple(min(step * n, info.size) for n in range(1, count + 1)), guessed=True)
    return learn_parts(req, info, pool, count)


def learn_parts(req: Requester, info: ObjectInfo, pool: ThreadPoolExecutor, count: int) -> Parts | None:
    """Return every part's true range, one HEAD each (None when the store cannot say, or they do not tile the object)."""
    ranges = list(pool.map(lambda number: part_range(req, number, count), range(1, count + 1)))
    if any(r is None for r in ranges):
        logger.debug("no part ranges for bucket=%s key=%s", req.bucket, req.key)
        return None
    spans = [r for r in ranges if r is not None]
    if spans[0][0] != 0 or any(spans[i][0] != spans[i - 1][1] for i in range(1, count)) or spans[-1][1] != info.size:
        return None
    return Parts(tuple(end for _, end in spans))


class PartDigests:
    """The digest of each part in stored bytes fed in order from ``start``: a part ends at each of ``ends``.

    With no ``ends``, the one digest of everything fed.
    """

    def __init__(self, check: Check, start: int, ends: Sequence[int]) -> None:
        self.check = check
        self.offset = start
        self.ends = ends
        self.hashed = check.new()
        self.done: list[bytes] = []

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            end = self.ends[len(self.done)] if len(self.done) < len(self.ends) else None
            take = len(view) if end is None else min(len(view), end - self.offset)
            self.hashed.update(view[:take])
            self.offset += take
            view = view[take:]
            if end is not None and self.offset == end:
                self.done.append(self.hashed.digest())
                self.hashed = self.check.new()

    def digests(self) -> list[bytes]:
        """Each part's digest (with no ``ends``, the digest of everything fed)."""
        return self.done if self.ends else [self.hashed.digest()]


class Checker:
    """Hashes stored bytes handed over in order, and gives the value the store's should be.

    For ranges that do not each hold whole parts (or the whole object): ranges of a
    single-PUT object, or of parts too large to fetch whole.
    """

    def __init__(self, check: Check, parts: Parts | None) -> None:
        self.check = check
        whole = parts is None and check.algorithm is not None and not check.composite
        self.whole = check.new() if whole else None
        self.parts = PartDigests(check, 0, parts.ends) if parts is not None and check.composite else None

    def feed(self, data: bytes | bytearray) -> None:
        if self.whole is not None:
            self.whole.update(data)
        if self.parts is not None:
            self.parts.feed(data)

    def value(self) -> str | None:
        """The value the store's should be (None: only the size is checked)."""
        if self.whole is not None:
            return self.check.of_whole(self.whole.digest())
        return None if self.parts is None else self.check.of_parts(self.parts.done)


@dataclass(frozen=True, slots=True)
class Plan:
    """The GETs of one attempt, and how their bytes are checked."""

    spans: list[Span]
    check: Check
    #: what the digests of each span, taken by the thread that fetched it, make: ``"parts"``,
    #: each span holding whole parts (one digest each, ending at ``part_ends``); ``"whole"``,
    #: the one span being the whole object; None when the spans are not checked one by one
    per_span: Literal["parts", "whole"] | None
    #: the spans are hashed in order as they are handed over (a ``Checker``): they do not
    #: each hold whole parts, yet the check needs the parts' or the whole object's digest
    in_order: bool
    #: one GET of the whole object, without a Range
    whole: bool = False
    #: where each part ends, when ``per_span`` is ``"parts"``
    part_ends: tuple[int, ...] = ()

    def hasher(self, span: Span) -> PartDigests | None:
        """What hashes the bytes of ``span`` fed in order (None when the plan does not check spans one by one)."""
        if self.per_span is None:
            return None
        ends = self.part_ends[
            bisect.bisect_right(self.part_ends, span[0]) : bisect.bisect_right(self.part_ends, span[1])
        ]
        return PartDigests(self.check, span[0], ends)

    def value(self, digests: list[bytes]) -> str | None:
        """The value the spans' digests make, in order (None when they are not checked one by one)."""
        if self.per_span == "parts":
            return self.check.of_parts(digests)
        return self.check.of_whole(digests[0]) if self.per_span == "whole" else None


def make_plan(
    check: Check,
    info: ObjectInfo,
    parts: Parts | None,
    settings: TransferSettings,
    *,
    whole_part_limit: int,
    span_bytes: int = 0,
) -> Plan:
    """Return the GETs for the object: whole parts when its parts are known and at most
    ``whole_part_limit``, else one GET when it is small, else ranges of ``part_size_bytes``.

    Whole parts go as many to a GET as fit in ``span_bytes`` (at least one).
    """
    whole = check.algorithm is not None and not check.composite
    if parts is not None and len(parts.ends) > 1 and parts.largest <= whole_part_limit:
        return Plan(_group(parts, span_bytes), check, per_span="parts", in_order=False, part_ends=parts.ends)
    if info.size < settings.multipart_threshold_bytes:
        # the digest of one GET is the whole object's, and the one part's of a one-part upload
        per_span: Literal["parts", "whole"] | None = "whole" if whole else "parts" if parts is not None else None
        return Plan([(0, info.size)], check, per_span=per_span, in_order=False, whole=True)
    step = settings.part_size_bytes
    spans = [(start, min(start + step, info.size)) for start in range(0, info.size, step)]
    return Plan(spans, check, per_span=None, in_order=whole or parts is not None)


def _group(parts: Parts, span_bytes: int) -> list[Span]:
    """The parts, consecutive ones joined while the join holds at most ``span_bytes``."""
    spans: list[Span] = []
    for start, end in parts.spans():
        if spans and end - spans[-1][0] <= span_bytes:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


__all__ = ["Check", "ObjectInfo", "Verified", "choose_check", "head", "make_plan"]
