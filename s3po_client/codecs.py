"""Streaming compression with bounded memory, and the one codec → ``Content-Encoding`` map.

Uploads read through a ``CompressingReader`` (a file-like ``read(n)`` over the source that
yields compressed bytes); downloads write through a ``DecodingWriter`` (decoded bytes go on
to the sink in pieces of at most ``CHUNK_BYTES``, so a decompression bomb cannot fill memory).

Backends: gzip and zlib use ISA-L (``isal``: about 15× the ``gzip`` command on one core,
docs/BENCHMARKS.md) when it is installed, else the standard library's ``zlib``; both write
the standard formats. zstd uses ``zstandard``.

>>> import io
>>> packed = CompressingReader(io.BytesIO(b"hello " * 1000), "gzip").read()
>>> out = io.BytesIO()
>>> with DecodingWriter(out, "gzip") as writer:
...     _ = writer.write(packed)
>>> out.getvalue() == b"hello " * 1000
True
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from types import ModuleType, TracebackType
from typing import IO, Any, BinaryIO, Protocol, cast

from .job import CODECS, Codec

#: how much input one compress/decompress step takes, and the most output one step yields
CHUNK_BYTES = 1024 * 1024

#: the ``Content-Encoding`` each codec's output is stored with (zlib as ``deflate``, as HTTP
#: names the zlib format and as the original S3-PO did)
CONTENT_ENCODING: dict[str, str] = {"gzip": "gzip", "zlib": "deflate", "zstd": "zstd"}

#: the ``Content-Encoding`` values a download decodes
DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "zstd"})

# zlib's wbits: 31 writes a gzip member, 15 a zlib stream, -15 raw deflate; 47 reads gzip or zlib.
_GZIP_WBITS = 31
_ZLIB_WBITS = 15
_RAW_WBITS = -15
_AUTO_WBITS = 47

#: the fast default levels (see docs/BENCHMARKS.md, "Compression backends")
DEFAULT_ISAL_LEVEL = 1
DEFAULT_ZLIB_LEVEL = 1
DEFAULT_ZSTD_LEVEL = 1


class Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@lru_cache(maxsize=1)
def deflate_backend() -> ModuleType:
    """Return the module that compresses gzip and zlib here: ``isal.isal_zlib`` if installed, else ``zlib``."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; the fallback is for odd platforms
        return zlib
    return isal_zlib


def content_encoding(codec: str) -> str:
    """Return the ``Content-Encoding`` for ``codec``: gzip → ``gzip``, zlib → ``deflate``, zstd → ``zstd``.

    >>> content_encoding("zlib")
    'deflate'
    """
    try:
        return CONTENT_ENCODING[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}") from None


def new_compressor(codec: Codec | str, level: int | None = None) -> Compressor:
    """Return a streaming compressor for ``codec`` (``None`` level: the fast default)."""
    if codec in ("gzip", "zlib"):
        backend = deflate_backend()
        wbits = _GZIP_WBITS if codec == "gzip" else _ZLIB_WBITS
        if backend is zlib:
            level = DEFAULT_ZLIB_LEVEL if level is None else max(0, min(9, level))
        else:
            level = DEFAULT_ISAL_LEVEL if level is None else max(0, min(3, level))
        return backend.compressobj(level, backend.DEFLATED, wbits)  # type: ignore[no-any-return]
    if codec == "zstd":
        import zstandard

        compressor: Any = zstandard.ZstdCompressor(level=DEFAULT_ZSTD_LEVEL if level is None else max(1, level))
        return compressor.compressobj()  # type: ignore[no-any-return]
    content_encoding(codec)  # raises the error naming the codecs
    raise AssertionError("unreachable")


class CompressingReader:
    """A file-like ``read(n)`` returning ``source`` compressed with ``codec``, in bounded memory.

    ``bytes_in`` counts the source bytes consumed so far, ``bytes_out`` the compressed bytes
    returned. Memory: the bytes asked for plus one ``CHUNK_BYTES`` step's output.
    """

    def __init__(self, source: Readable, codec: Codec | str, level: int | None = None) -> None:
        self.source = source
        self.codec = codec
        self.bytes_in = 0
        self.bytes_out = 0
        self._compressor = new_compressor(codec, level)
        self._pending = bytearray()
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            chunk = self.source.read(CHUNK_BYTES)
            if chunk:
                self.bytes_in += len(chunk)
                self._pending += self._compressor.compress(chunk)
            else:
                self._pending += self._compressor.flush()
                self._done = True
        if size < 0 or size >= len(self._pending):
            out = bytes(self._pending)
            self._pending.clear()
        else:
            with memoryview(self._pending) as view:
                out = bytes(view[:size])  # one copy, not a slice and then a copy
            del self._pending[:size]
        self.bytes_out += len(out)
        return out


class _Decoder(Protocol):
    def feed(self, data: bytes) -> None: ...
    def finish(self) -> None: ...


class DecodingWriter:
    """A file-like ``write(data)`` that decodes ``encoding`` and writes the result to ``sink``.

    ``encoding`` is a ``Content-Encoding`` value (``gzip``, ``deflate`` — zlib or raw
    deflate —, ``zstd``); decoded bytes reach ``sink`` in pieces of at most ``CHUNK_BYTES``.
    ``close()`` (or leaving the ``with`` block without an error) checks the stream ended
    properly, raising ``ValueError`` for a truncated or corrupt stream.
    ``bytes_out`` counts the decoded bytes written.
    """

    def __init__(self, sink: BinaryIO | Any, encoding: str) -> None:
        self.sink = sink
        self.encoding = encoding.strip().lower()
        self.bytes_out = 0
        if self.encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder: _Decoder = _DeflateDecoder(self._emit, gzip=self.encoding != "deflate")
        elif self.encoding == "zstd":
            self._decoder = _ZstdDecoder(self._emit)
        else:
            raise ValueError(f"cannot decode Content-Encoding {encoding!r}")

    def _emit(self, data: bytes) -> None:
        if data:
            self.sink.write(data)
            self.bytes_out += len(data)

    def write(self, data: bytes) -> int:
        self._decoder.feed(data)
        return len(data)

    def close(self) -> None:
        self._decoder.finish()

    def __enter__(self) -> DecodingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()


class _DeflateDecoder:
    """gzip (every member, as ``gzip -d`` does), zlib, or raw deflate (what some servers call deflate)."""

    def __init__(self, emit: Any, *, gzip: bool) -> None:
        self.emit = emit
        self.gzip = gzip
        self.backend = deflate_backend()
        self.obj: Any = None

    def _new(self, first: bytes) -> Any:
        if self.gzip:
            wbits = _GZIP_WBITS
        elif first and (first[0] & 0x0F) == 8 and (first[0] << 8 | (first[1] if len(first) > 1 else 0)) % 31 == 0:
            wbits = _ZLIB_WBITS  # a zlib header (RFC 1950): CM=8 and the check bits
        else:
            wbits = _RAW_WBITS
        return self.backend.decompressobj(wbits)

    def feed(self, data: bytes) -> None:
        while data:
            if self.obj is None or self.obj.eof:
                if self.obj is not None and not self.gzip:
                    raise ValueError("trailing bytes after the end of the deflate stream")
                if self.obj is not None and not data.strip(b"\0"):
                    return  # padding after the last gzip member, as gzip -d tolerates
                self.obj = self._new(data)
            try:
                self.emit(self.obj.decompress(data, CHUNK_BYTES))
                while self.obj.unconsumed_tail and not self.obj.eof:
                    self.emit(self.obj.decompress(self.obj.unconsumed_tail, CHUNK_BYTES))
            except (zlib.error, getattr(self.backend, "error", zlib.error)) as exc:
                raise ValueError(f"corrupt {'gzip' if self.gzip else 'deflate'} stream: {exc}") from exc
            data = self.obj.unused_data if self.obj.eof else b""

    def finish(self) -> None:
        if self.obj is None:
            return  # an empty body decodes to nothing, as browsers and curl treat it
        while not self.obj.eof:
            out = self.obj.decompress(b"", CHUNK_BYTES)
            if not out:
                raise ValueError("truncated stream: it ends before the compressed data does")
            self.emit(out)


class _ZstdDecoder:
    """zstd frames, one after another; output flows out in pieces of at most ``CHUNK_BYTES``.

    zstandard's stream writer bounds the output but cannot tell whether the last frame was
    complete, so a truncated zstd stream is caught by the download's size/checksum check
    (of the stored bytes), not here.
    """

    def __init__(self, emit: Any) -> None:
        import zstandard

        self.zstandard = zstandard
        self.writer = zstandard.ZstdDecompressor().stream_writer(
            cast(IO[bytes], _Emitter(emit)), write_size=CHUNK_BYTES, closefd=False
        )

    def feed(self, data: bytes) -> None:
        try:
            self.writer.write(data)
        except self.zstandard.ZstdError as exc:
            raise ValueError(f"corrupt zstd stream: {exc}") from exc

    def finish(self) -> None:
        self.writer.flush()  # type: ignore[no-untyped-call]  # zstandard's stub leaves it untyped


class _Emitter:
    def __init__(self, emit: Any) -> None:
        self.write_bytes = emit

    def write(self, data: bytes) -> int:
        self.write_bytes(bytes(data))
        return len(data)
