"""Part buffers (``s3po_client/transfer/buffers.py``): each part read once, into memory reused from part to part."""

from __future__ import annotations

import io
import os
from pathlib import Path

from s3po_client.transfer.buffers import PartBuffers, PartReader
from s3po_client.transfer.sources import CountingReader


def cut(reader: PartReader, buffers: PartBuffers, sizes: list[int]) -> tuple[list[bytes], set[int]]:
    """Cut parts of ``sizes`` (the last repeated) until the end; return them and the buffers' ids."""
    parts: list[bytes] = []
    seen: set[int] = set()
    for i in range(10_000):
        size = sizes[min(i, len(sizes) - 1)]
        buf, n = reader.next(size)
        seen.add(id(buf))
        parts.append(bytes(buf[:n]))
        buffers.give_back(buf)
        if n < size:
            return parts, seen
    raise AssertionError("no end")


def test_a_file_is_cut_into_parts_read_into_the_same_buffers(tmp_path: Path) -> None:
    data = os.urandom(1000 * 37 + 11)
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as f:
        counted = CountingReader(f)
        head = counted.read(2500)  # read ahead, as an upload reads its first bytes to choose how to send them
        buffers = PartBuffers(2)
        parts, seen = cut(PartReader(counted, head, buffers), buffers, [1000])
    assert b"".join(parts) == data and all(len(p) == 1000 for p in parts[:-1])
    assert len(seen) == 1, "a buffer given back is lent again"
    assert counted.count == len(data)


def test_a_reader_without_readinto_fills_the_buffers_too() -> None:
    data = os.urandom(5000)

    class Chunks:  # a compressor's reader: read() only, short reads
        def __init__(self) -> None:
            self.f = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self.f.read(min(size, 300))

    buffers = PartBuffers(1)
    parts, _ = cut(PartReader(Chunks(), b"", buffers), buffers, [1024])
    assert b"".join(parts) == data


def test_no_more_buffers_than_the_count_and_small_ones_give_way_to_larger_parts() -> None:
    buffers = PartBuffers(2)
    a, b = buffers.take(10), buffers.take(10)
    buffers.give_back(a)
    assert buffers.take(5) is a
    buffers.give_back(a)
    buffers.give_back(b)
    c = buffers.take(20)  # the parts grew: a small buffer is dropped, a larger one made
    assert len(c) == 20 and c is not a and c is not b
    d = buffers.take(20)
    assert len(d) == 20
