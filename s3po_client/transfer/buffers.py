"""The buffers a multipart upload reads its parts into: allocated once per upload, lent to each part in turn.

A part read with ``read()`` is a fresh ``bytes`` each time: an allocation, the page faults
of new memory and a copy, for every byte of the file (a third of the client's CPU for a
large upload, docs/BENCHMARKS.md). Read with ``readinto`` into a buffer an earlier part
gave back, each byte costs one copy from the page cache, and the part's checksum and its
send use that same memory.
"""

from __future__ import annotations

import threading
from typing import Protocol

#: what a part's bytes are held in
Bytes = bytes | bytearray | memoryview

#: the most one ``read`` of a reader without ``readinto`` (a compressor) asks for: what it
#: returns is copied into the buffer, and a whole part's worth would be one more part in memory
READ_STEP_BYTES = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class PartBuffers:
    """Up to ``count`` buffers, each lent to one part at a time and given back once the part is done.

    ``count`` is the parts in flight plus the one being read, so :meth:`take` waits only when
    a caller holds more than that. A buffer smaller than the part asked for (the part size of
    a stream of unknown length grows) is dropped for a larger one.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._free: list[bytearray] = []
        self._made = 0
        self._ready = threading.Condition()

    def take(self, size: int) -> bytearray:
        """Return a buffer of at least ``size`` bytes, made if fewer than ``count`` exist."""
        with self._ready:
            while True:
                for i, buf in enumerate(self._free):
                    if len(buf) >= size:
                        return self._free.pop(i)
                if self._free and self._made >= self.count:  # too small for the parts from now on
                    self._free.pop(0)
                    self._made -= 1
                if self._made < self.count:
                    self._made += 1
                    return bytearray(size)
                self._ready.wait()

    def give_back(self, buf: bytearray) -> None:
        with self._ready:
            self._free.append(buf)
            self._ready.notify()

    def clear(self) -> None:
        """Drop the free buffers (those still lent go with their parts)."""
        with self._ready:
            self._made -= len(self._free)
            self._free.clear()


def fill(reader: Readable, buf: bytearray, start: int, size: int) -> int:
    """Read into ``buf[start:size]`` until it is full or ``reader`` ends; return the bytes now in ``buf``.

    With ``readinto`` (a file) the bytes land in ``buf`` directly; otherwise (a compressor)
    each ``read``, of at most :data:`READ_STEP_BYTES`, is copied in.
    """
    view = memoryview(buf)
    got = start
    readinto = getattr(reader, "readinto", None)
    while got < size:
        if readinto is not None:
            n = readinto(view[got:size])
            if not n:
                break
        else:
            chunk = reader.read(min(size - got, READ_STEP_BYTES))
            n = len(chunk)
            if not n:
                break
            view[got : got + n] = chunk
        got += n
    return got


class PartReader:
    """Cuts a stream into parts, each in a buffer from ``buffers``: first the bytes read ahead (``head``), then the rest."""

    def __init__(self, reader: Readable, head: bytes, buffers: PartBuffers) -> None:
        self._reader = reader
        self._head = memoryview(head)
        self._buffers = buffers

    def next(self, size: int) -> tuple[bytearray, int]:
        """Return a buffer holding the next part (at most ``size`` bytes) and its length (0 at the end)."""
        buf = self._buffers.take(size)
        n = min(size, len(self._head))
        if n:
            buf[:n] = self._head[:n]
            # the last view of the bytes read ahead goes with them: they are freed at once
            self._head = self._head[n:] if n < len(self._head) else memoryview(b"")
        return buf, fill(self._reader, buf, n, size) if n < size else n
