"""What the engine's public methods return: one frozen value per kind of answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..localfile import FileStat
from .verify import Verified


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an upload stored: where, how many bytes were read and sent, and the source's identity.

    ``bytes_read`` counts source bytes, ``bytes_sent`` stored bytes (fewer when compressed).
    ``source`` is the file's stat taken when the successful attempt began: compare it with
    the file now before deleting it.
    """

    bucket: str
    key: str
    bytes_read: int
    bytes_sent: int
    etag: str
    source: FileStat | None = None
    #: the real path of the file read (symlinks resolved), the one to delete
    source_path: str | None = None


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What a download fetched, and what its bytes were checked against.

    ``verified`` names the check (see :mod:`.verify`): ``"md5"``, ``"md5-composite"``,
    ``"crc32"``, ``"crc32-composite"``, ``"sha256"``, ``"sha1"``, or ``"size"`` when the
    store kept nothing else to check. ``bytes_written`` counts what was written (more than
    ``bytes_stored`` when decoded); ``path`` is the file written, for ``get_file``.
    """

    bucket: str
    key: str
    bytes_stored: int
    bytes_written: int
    etag: str
    verified: Verified
    path: str | None = None


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object a listing found."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    storage_class: str | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket the credentials can list."""

    name: str
    created: datetime


__all__ = ["Bucket", "DownloadResult", "StoredObject", "UploadResult"]
