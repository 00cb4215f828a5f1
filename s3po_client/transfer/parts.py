"""Part sizing and the checksums that prove parts and objects: pure functions, no I/O.

>>> part_size_for(1, base_bytes=8 * MiB, size_hint=None) == 8 * MiB
True
>>> part_size_for(1, base_bytes=8 * MiB, size_hint=200 * GiB) // MiB   # 200 GiB / 10,000, rounded up
21
>>> multipart_etag([md5(b"a").digest(), md5(b"b").digest()])
'96e024ba2074fe77e8e965ba43a704be-2'
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from ..codecs import deflate_backend
from ..settings import MAX_PART_SIZE_BYTES, MAX_PARTS, GiB, MiB

#: part numbers after which an upload of unknown length doubles its part size, so that
#: 10,000 parts of a growing size reach 5 TiB (8 MiB × 1,000 × (1 + 2 + … + 512) ≈ 7.8 TiB)
GROW_EVERY_PARTS = 1000

_PLAIN_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-(\d+)$")

__all__ = ["GiB", "MiB", "md5", "multipart_etag", "part_size_for"]


def part_size_for(number: int, *, base_bytes: int, size_hint: int | None) -> int:
    """Return the size of part ``number`` (1-based).

    With a ``size_hint`` (the upload's size, or a bound on it), every part has one size:
    ``base_bytes``, or larger (rounded up to a MiB) when the object would not fit in 10,000
    parts. Without one (a stream of unknown length), the size doubles every 1,000 parts.
    """
    if size_hint is not None:
        needed = -(-size_hint // MAX_PARTS)
        return min(MAX_PART_SIZE_BYTES, max(base_bytes, -(-needed // MiB) * MiB))
    return min(MAX_PART_SIZE_BYTES, base_bytes << ((number - 1) // GROW_EVERY_PARTS))


def md5(data: bytes | bytearray | memoryview) -> hashlib._Hash:
    """Return the MD5 of ``data`` (an integrity check, not a security one)."""
    return hashlib.md5(data, usedforsecurity=False)


def b64(digest: bytes) -> str:
    """Return ``digest`` base64-encoded, as Content-MD5 and x-amz-checksum-* carry it."""
    return base64.b64encode(digest).decode("ascii")


def crc32_b64(data: bytes | bytearray | memoryview) -> str:
    """Return the CRC32 of ``data`` as ``x-amz-checksum-crc32`` carries it (big-endian, base64).

    ISA-L's CRC32 where installed: 7× zlib's here (512 MiB: 0.024 s against 0.17 s).
    """
    crc: int = deflate_backend().crc32(data)
    return b64(crc.to_bytes(4, "big"))


def multipart_etag(part_md5s: Iterable[bytes]) -> str:
    """Return the ETag S3 gives a multipart object: MD5 of the parts' MD5s, ``-`` the part count."""
    digests = list(part_md5s)
    return f"{md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def composite_crc32(part_crc32s: Iterable[str]) -> str:
    """Return the CRC32 S3 gives a multipart object: CRC32 of the parts' CRC32s, ``-`` the part count."""
    raw = [base64.b64decode(c) for c in part_crc32s]
    return f"{crc32_b64(b''.join(raw))}-{len(raw)}"


def clean_etag(etag: str | None) -> str:
    """Return ``etag`` without its quotes, lower-cased."""
    return (etag or "").strip().strip('"').lower()


def is_plain_md5(etag: str) -> bool:
    """Return True when ``etag`` looks like the MD5 of the object (a single-PUT, unencrypted object)."""
    return bool(_PLAIN_MD5_ETAG.match(clean_etag(etag)))


def multipart_count(etag: str) -> int | None:
    """Return N for a multipart ETag ``<md5>-N``, else None."""
    return composite_count(etag) if _MULTIPART_ETAG.match(clean_etag(etag)) else None


def composite_count(value: str) -> int | None:
    """Return N for a composite value ``<checksum>-N`` (a multipart ETag or base64 checksum), else None.

    >>> composite_count("ACuxwA==-2"), composite_count("+xFbCA==")
    (2, None)
    """
    head, _, count = value.strip().strip('"').rpartition("-")
    return int(count) if head and count.isdigit() else None
