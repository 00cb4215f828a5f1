"""What an upload reads from: a file path, bytes, or a file object; one small class each.

Each source opens a fresh reader for every attempt (``open``), knows its size when it can
(``size``), and says after the last byte was read whether what was read is still what is
there (``check_unchanged``), so a file that changed while it was sent is never taken as
stored.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

from ..errors import JobError, SourceChangedError, TransferError, UnsafePathError
from ..localfile import FileStat, open_checked


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class CountingReader:
    """Counts the bytes read through it."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size)
        self.count += len(data)
        return data

    def readinto(self, buf: memoryview) -> int:
        """Read into ``buf`` (straight from the file, where the reader can); return the bytes read."""
        readinto = getattr(self.reader, "readinto", None)
        if readinto is not None:
            n = int(readinto(buf) or 0)
        else:
            data = self.reader.read(len(buf))
            n = len(data)
            buf[:n] = data
        self.count += n
        return n


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
    """A local file, by path: opened once per attempt with ``O_NOFOLLOW`` and checked on the
    descriptor (see :func:`~s3po_client.localfile.open_checked`), its stat compared again
    after the last byte.

    ``allow_dirs`` limits which files may be read (the daemon's ``--allow-dir``);
    :attr:`real_path` is the file actually read, the one to delete after the upload.
    """

    rereadable = True

    def __init__(
        self, path: str | os.PathLike[str], allow_dirs: Sequence[str] = (), opened: tuple[BinaryIO, str] | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.allow_dirs = tuple(allow_dirs)
        #: a file the caller already opened with open_checked, read by the first attempt
        self._opened = opened
        self.real_path: str | None = None
        self._file: BinaryIO | None = None
        self._stat: FileStat | None = None

    def open(self) -> Reader:
        if self._file is not None:  # an earlier attempt's reader; the caller's file stays for the first
            self._file.close()
            self._file = None
        if self._opened is not None:
            (self._file, self.real_path), self._opened = self._opened, None
        else:
            try:
                self._file, self.real_path = open_checked(self.path, allow_dirs=self.allow_dirs)
            except UnsafePathError:
                raise
            except JobError as exc:  # missing, unreadable, not a regular file: no attempt will help
                raise TransferError(str(exc), transient=False) from None
        self._stat = FileStat.from_stat(os.fstat(self._file.fileno()))
        return self._file

    @property
    def size(self) -> int | None:
        return self._stat.size if self._stat else None

    @property
    def stat(self) -> FileStat | None:
        return self._stat

    def check_unchanged(self, bytes_read: int, bucket: str, key: str) -> None:
        assert self._file is not None and self._stat is not None and self.real_path is not None
        try:
            now = FileStat.of(self.real_path, follow_symlinks=False)
        except FileNotFoundError:
            raise SourceChangedError(
                f"s3://{bucket}/{key}: {self.path!r} vanished while it was sent", bucket=bucket, key=key
            ) from None
        # No fstat of the descriptor as well: a name that still shows the stat taken at open
        # names the inode read (held open, its number cannot be reused), so it is that inode's
        # stat now, ctime included.
        if now != self._stat or bytes_read != self._stat.size:
            raise SourceChangedError(
                f"s3://{bucket}/{key}: {self.path!r} changed while it was sent "
                f"(read {bytes_read} bytes of {self._stat.size}; size now {now.size})",
                bucket=bucket,
                key=key,
            )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._opened is not None:
            self._opened[0].close()
            self._opened = None


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
