"""What an upload attempt sends and stores: bodies with their checksums, progress, the attempt's result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from .buffers import Bytes
from .parts import crc32_b64, md5
from .sources import Reader

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True, slots=True)
class Sent:
    """What one attempt stored: the object's ETag and the bytes sent."""

    etag: str
    bytes_sent: int
    parts: int
    #: parts (and their bytes) a resumed upload found stored already, not sent again
    parts_reused: int = 0
    bytes_reused: int = 0


@dataclass(frozen=True, slots=True)
class Body:
    """One PUT's or part's bytes and the checksums it carries (at least one; see :mod:`.checksums`)."""

    #: the bytes, or a view of the part buffer they were read into
    data: Bytes
    md5: bytes | None
    crc32: str | None
    #: source bytes consumed once this body was cut (for progress, with compression)
    source_done: int

    @classmethod
    def of(cls, data: Bytes, *, md5: bool, crc32: bool, source_done: int) -> Body:
        return cls(
            data=data,
            md5=md5_of(data) if md5 or not crc32 else None,
            crc32=crc32_b64(data) if crc32 else None,
            source_done=source_done,
        )

    def md5_digest(self) -> bytes:
        """The MD5 of the bytes, computed now if the body was sent without one."""
        return self.md5 if self.md5 is not None else md5_of(self.data)


def md5_of(data: Bytes) -> bytes:
    return md5(data).digest()


def read_exactly(reader: Reader, size: int) -> bytes:
    """Return the next ``size`` bytes of ``reader`` (fewer only at its end)."""
    chunks = []
    left = size
    while left > 0:
        chunk = reader.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ProgressReporter:
    """Calls ``progress(done, total)`` with a done count that only grows, one call at a time."""

    def __init__(self, progress: Progress | None, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def advance_to(self, done: int) -> None:
        if self.progress is None:
            return
        with self._lock:
            if done > self.done or done == 0:
                self.done = done
                self.progress(done, self.total)
