"""Where a download attempt writes: a file descriptor (at offsets, or decoded in order) or a file object.

Each output gives :mod:`.fetch` its ``Target`` through ``open(encoding)``: bytes kept as
stored may go to a file descriptor at their offsets (``fd``); anything decoded goes in
order through a ``DecodingWriter``. :func:`atomic_file` makes the file appear only whole.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from ..codecs import DecodingWriter


class Output:
    """Where a download attempt writes; ``count`` is the bytes written in order."""

    fd: int | None = None

    def __init__(self) -> None:
        self.count = 0
        self.decoder: DecodingWriter | None = None
        self.restartable = True
        #: whether an attempt has written here (a retry then restarts it)
        self.opened = False

    def open(self, encoding: str | None) -> Output:
        """Become the attempt's target, decoding ``encoding`` (None: the bytes as stored)."""
        self.opened = True
        self.decoder = DecodingWriter(_DecodedSink(self), encoding) if encoding else None
        return self

    def write(self, data: bytearray) -> object:
        if self.decoder is not None:
            return self.decoder.write(cast(bytes, data))  # the decoders take any buffer
        return self.put(data)

    def put(self, data: bytes | bytearray) -> int:
        """Write ``data`` after the bytes written so far."""
        raise NotImplementedError

    def restart(self) -> None:
        self.rewind()
        self.count = 0
        if self.decoder is not None:
            self.decoder = DecodingWriter(_DecodedSink(self), self.decoder.encoding)

    def rewind(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Check the encoded stream ended properly (``ValueError`` if not)."""
        if self.decoder is not None:
            self.decoder.close()

    @property
    def bytes_written(self) -> int | None:
        """The bytes written in order (None: written at their offsets, so the stored size)."""
        return self.count if self.decoder is not None or self.fd is None else None


class FileOutput(Output):
    """A file descriptor: bytes as stored go at their offsets, decoded ones through a buffer, in order."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.file = os.fdopen(fd, "wb", closefd=False)
        self.descriptor = fd

    def open(self, encoding: str | None) -> Output:
        super().open(encoding)
        self.fd = self.descriptor if self.decoder is None else None
        return self

    def put(self, data: bytes | bytearray) -> int:
        self.file.write(data)
        self.count += len(data)
        return len(data)

    def rewind(self) -> None:
        self.file.flush()
        self.file.seek(0)
        os.ftruncate(self.descriptor, 0)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        """Close the buffer over the descriptor (which stays open): what it holds is written first."""
        try:
            self.file.close()
        except (OSError, ValueError):
            pass  # a failed download's temporary file is removed anyway


class StreamOutput(Output):
    """A file object written in order; restartable when it can be rewound to ``rewind_to``."""

    def __init__(self, out: Any, rewind_to: int | None) -> None:
        super().__init__()
        self.out = out
        self.rewind_to = rewind_to
        self.restartable = rewind_to is not None

    @classmethod
    def where_it_stands(cls, out: Any) -> StreamOutput:
        """An output on ``out`` from its position now; restartable when ``out`` can seek."""
        try:
            position: int | None = out.tell() if out.seekable() else None
        except (AttributeError, OSError, ValueError):
            position = None
        return cls(out, rewind_to=position)

    def put(self, data: bytes | bytearray) -> int:
        self.out.write(data)
        self.count += len(data)
        return len(data)

    def rewind(self) -> None:
        if self.rewind_to is None:
            raise ValueError("this file object cannot be rewound")
        self.out.seek(self.rewind_to)
        self.out.truncate()


class _DecodedSink:
    """The sink of a decoder: what it decodes goes to the output, in order."""

    def __init__(self, output: Output) -> None:
        self.output = output

    def write(self, data: bytes) -> int:
        return self.output.put(data)


@contextmanager
def atomic_file(target: str, *, fsync: bool) -> Iterator[FileOutput]:
    """Yield an output on a temporary file beside ``target`` that replaces it once the block ends well.

    Parent directories are created; on any failure the temporary file is removed and
    nothing appears at ``target``. With ``fsync`` the file reaches the disk before the rename.
    """
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, f".{os.path.basename(target)}.{secrets.token_hex(4)}.s3po-tmp")
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        output = FileOutput(fd)
        try:
            yield output
            output.flush()
            if fsync:
                os.fsync(fd)
        finally:
            # Its buffer goes to the temporary file now, while the descriptor is still ours:
            # left to the garbage collector, a failed download's buffered bytes would be
            # written later into whatever reused the number (a Redis socket).
            output.close()
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
