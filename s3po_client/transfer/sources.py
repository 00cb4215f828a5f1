"""What an upload reads from: a file path, bytes, or a file object; one small class each.

Each source opens a fresh reader for every attempt (``open``), knows its size when it can
(``size``), and says after the last byte was read whether what was read is still what is
there (``check_unchanged``), so a file that changed while it was sent is never taken as
stored.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import IO, Any, Protocol

from ..errors import SourceChangedError


@dataclass(frozen=True, slots=True)
class FileStat:
    """What identifies a version of a local file: size, mtime and inode."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileStat:
        """Return the stat of ``path`` (raises FileNotFoundError when it is gone)."""
        return cls.from_stat(os.stat(path))

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStat:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Source(Protocol):
    """A strategy for one kind of upload source."""

    #: what a retry needs: can the source be read again from its start?
    rereadable: bool

    def open(self) -> Reader:
        """Return a reader from the start of the data (closing any reader opened before)."""

    @property
    def size(self) -> int | None:
        """The number of bytes ``open()``'s reader yields, when known."""

    @property
    def stat(self) -> FileStat | None:
        """The identity of the file read, taken when the reader was opened (files only)."""

    def check_unchanged(self, bytes_read: int, bucket: str, key: str) -> None:
        """Raise SourceChangedError when the data changed while it was read."""

    def close(self) -> None: ...


class FileSource:
    """A local file, by path: stat taken at open, compared again after the last byte."""

    rereadable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._stat: FileStat | None = None

    def open(self) -> Reader:
        self.close()
        before = FileStat.of(self.path)
        self._file = open(self.path, "rb")
        opened = FileStat.from_stat(os.fstat(self._file.fileno()))
        if opened != before:  # replaced between stat and open: take what we opened
            before = opened
        self._stat = before
        return self._file

    @property
    def size(self) -> int | None:
        return self._stat.size if self._stat else None

    @property
    def stat(self) -> FileStat | None:
        return self._stat

    def check_unchanged(self, bytes_read: int, bucket: str, key: str) -> None:
        assert self._file is not None and self._stat is not None
        try:
            now = FileStat.of(self.path)
        except FileNotFoundError:
            raise SourceChangedError(f"s3://{bucket}/{key}: {self.path!r} vanished while it was sent",
                                     bucket=bucket, key=key) from None
        held = FileStat.from_stat(os.fstat(self._file.fileno()))
        if now != self._stat or held != self._stat or bytes_read != self._stat.size:
            raise SourceChangedError(
                f"s3://{bucket}/{key}: {self.path!r} changed while it was sent "
                f"(read {bytes_read} bytes of {self._stat.size}; size now {now.size})",
                bucket=bucket, key=key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BytesSource:
    """Bytes in memory (a ``str`` is encoded as UTF-8)."""

    rereadable = True
    stat = None

    def __init__(self, data: bytes | bytearray | memoryview | str) -> None:
        self.data = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def open(self) -> Reader:
        return io.BytesIO(self.data)

    @property
    def size(self) -> int | None:
        return len(self.data)

    def check_unchanged(self, bytes_read: int, bucket: str, key: str) -> None:
        return None

    def close(self) -> None:
        return None


class FileobjSource:
    """A readable binary file object, read from where it stands; re-read on retry only if seekable."""

    stat = None

    def __init__(self, fileobj: Any) -> None:
        if not hasattr(fileobj, "read"):
            raise TypeError(f"upload_fileobj needs an object with read(), got {type(fileobj).__name__}")
        self.fileobj = fileobj
        try:
            self.start: int | None = fileobj.tell() if fileobj.seekable() else None
        except (AttributeError, OSError, ValueError):
            self.start = None
        self.rereadable = self.start is not None
        self._opened = False

    def open(self) -> Reader:
        if self._opened:
            if self.start is None:
                raise RuntimeError("a non-seekable file object cannot be read twice")
            self.fileobj.seek(self.start)
        self._opened = True
        return _BinaryReader(self.fileobj)

    @property
    def size(self) -> int | None:
        return None

    def check_unchanged(self, bytes_read: int, bucket: str, key: str) -> None:
        return None

    def close(self) -> None:
        return None


class _BinaryReader:
    """Reads a file object that may return str (a text file) as UTF-8 bytes."""

    def __init__(self, fileobj: Any) -> None:
        self.fileobj = fileobj

    def read(self, size: int = -1) -> bytes:
        data = self.fileobj.read(size)
        if isinstance(data, str):
            return data.encode("utf-8")
        return bytes(data or b"")
