"""Codecs: standard formats out, every format back, bounded pieces, clear errors."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import zlib

import pytest
import zstandard

from s3po_client import codecs
from s3po_client.codecs import CHUNK_BYTES, CompressingReader, DecodingWriter, content_encoding


class Pieces:
    """A sink that records the size of each write."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.sizes: list[int] = []

    def write(self, data: bytes) -> int:
        self.sizes.append(len(data))
        return self.buffer.write(data)


DATA = os.urandom(300_000) + b"compressible line\n" * 200_000


def compress(codec: str, data: bytes = DATA, read_size: int = 65536) -> bytes:
    reader = CompressingReader(io.BytesIO(data), codec)
    out = []
    while chunk := reader.read(read_size):
        assert len(chunk) <= read_size
        out.append(chunk)
    assert reader.bytes_in == len(data) and reader.bytes_out == sum(map(len, out))
    return b"".join(out)


def test_the_content_encoding_map() -> None:
    assert [content_encoding(c) for c in ("gzip", "zlib", "zstd")] == ["gzip", "deflate", "zstd"]
    with pytest.raises(ValueError, match="gzip, zlib, zstd"):
        content_encoding("brotli")


def test_isal_is_the_backend_here() -> None:
    assert codecs.deflate_backend().__name__ == "isal.isal_zlib"


def test_outputs_are_the_standard_formats() -> None:
    assert gzip.decompress(compress("gzip")) == DATA
    assert subprocess.run(["gzip", "-dc"], input=compress("gzip"), capture_output=True, check=True).stdout == DATA
    assert zlib.decompress(compress("zlib")) == DATA
    assert zstandard.ZstdDecompressor().decompressobj().decompress(compress("zstd")) == DATA


@pytest.mark.parametrize(
    "encoding,packed",
    [
        ("gzip", gzip.compress(DATA)),
        ("x-gzip", gzip.compress(DATA)),
        ("deflate", zlib.compress(DATA)),
        ("deflate", zlib.compress(DATA)[2:-4]),  # raw deflate, as some servers send it
        ("zstd", zstandard.ZstdCompressor().compress(DATA)),
    ],
    # named, not by their bytes: DATA is random, and xdist's workers must collect the same ids
    ids=["gzip", "x-gzip", "deflate", "raw-deflate", "zstd"],
)
def test_decoding_in_any_slicing(encoding: str, packed: bytes) -> None:
    for step in (1, 1000, len(packed)):
        sink = Pieces()
        with DecodingWriter(sink, encoding) as writer:
            for i in range(0, len(packed), step if step > 1 else 7919):
                writer.write(packed[i : i + (step if step > 1 else 7919)])
        assert sink.buffer.getvalue() == DATA and writer.bytes_out == len(DATA)


def test_concatenated_gzip_members_and_zstd_frames_all_decode() -> None:
    for encoding, packed in (
        ("gzip", gzip.compress(b"one ") + gzip.compress(b"two")),
        ("zstd", zstandard.ZstdCompressor().compress(b"one ") + zstandard.ZstdCompressor().compress(b"two")),
    ):
        sink = Pieces()
        with DecodingWriter(sink, encoding) as writer:
            writer.write(packed)
        assert sink.buffer.getvalue() == b"one two"


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_decompression_bomb_comes_out_in_bounded_pieces(codec: str) -> None:
    zeros = 64 * CHUNK_BYTES
    packed = compress(codec, b"\0" * zeros)
    assert len(packed) < zeros // 500
    sink = Pieces()
    with DecodingWriter(sink, content_encoding(codec)) as writer:
        writer.write(packed)
    assert sum(sink.sizes) == zeros and max(sink.sizes) <= CHUNK_BYTES


def test_corrupt_and_truncated_streams_are_errors() -> None:
    with pytest.raises(ValueError, match="corrupt gzip"):
        DecodingWriter(Pieces(), "gzip").write(b"not gzip at all")
    with pytest.raises(ValueError, match="truncated"):
        with DecodingWriter(Pieces(), "gzip") as writer:
            writer.write(gzip.compress(DATA)[:-100])
    with pytest.raises(ValueError, match="trailing"):
        DecodingWriter(Pieces(), "deflate").write(zlib.compress(b"x") + b"junk")
    with pytest.raises(ValueError, match="cannot decode"):
        DecodingWriter(Pieces(), "br")
    with pytest.raises(ValueError, match="corrupt zstd"):
        DecodingWriter(Pieces(), "zstd").write(b"\x28\xb5\x2f\xfd" + b"\xff" * 50)


def test_an_empty_body_decodes_to_nothing() -> None:
    sink = Pieces()
    with DecodingWriter(sink, "gzip"):
        pass
    assert sink.buffer.getvalue() == b""


def test_levels_are_accepted_and_clamped() -> None:
    fast = len(b"".join(iter(lambda r=CompressingReader(io.BytesIO(DATA), "gzip", 0): r.read(1 << 20), b"")))
    best = len(b"".join(iter(lambda r=CompressingReader(io.BytesIO(DATA), "gzip", 9): r.read(1 << 20), b"")))
    assert best < fast
    assert gzip.decompress(b"".join(iter(CompressingReader(io.BytesIO(DATA), "gzip", 22).read, b""))) == DATA


def test_the_docstring_examples_hold() -> None:
    import doctest

    from s3po_client import settings
    from s3po_client.transfer import headers, parts

    for module in (codecs, settings, headers, parts):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
