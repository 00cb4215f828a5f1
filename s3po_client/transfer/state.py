"""How a multipart upload is remembered while it runs, so a killed run's upload is resumed, not orphaned.

A multipart upload that nobody completes or aborts keeps its parts on the store, billed,
until a lifecycle rule removes them. The engine therefore records each multipart upload it
starts (a :class:`SavedUpload`) through a :class:`MultipartState` before its first part is
sent, and clears the record once the upload is completed or aborted. Whoever runs the
transfer next finds the record: it resumes that upload (``ListParts``, each stored part
checked against the file's part, only the missing ones sent) or, when the file changed or
the upload is gone, aborts it and starts again.

The engine knows nothing of where records live: s3pod keeps them in Redis
(``s3pod/uploads.py``); an in-process caller passes none.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..localfile import FileStat

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SavedUpload:
    """A multipart upload under way: its id, target, part size, and what was being sent.

    ``source`` is the local file's identity when the upload began (None for a source that is
    not a file); ``compress`` the codec of the stream sent; ``crc32`` whether the upload was
    created with CRC32 checksums. A resumed upload must match all of them.

    An empty ``upload_id`` is an upload about to be created (recorded before the request,
    so a process killed before it learns the id still leaves a trace). ``others`` are the
    ids of the uploads of ``key`` already under way then: whoever finds the record aborts
    every upload of ``key`` the store lists that is not one of them, without trusting the
    store's clock (None: they were not known, and every upload of ``key`` is aborted).

    >>> saved = SavedUpload("id-1", "b", "k", 8388608, FileStat(10, 1, 2, 3), None, False, 1.5)
    >>> SavedUpload.from_json(saved.to_json()) == saved
    True
    """

    upload_id: str
    bucket: str
    key: str
    part_size_bytes: int
    source: FileStat | None
    compress: str | None
    crc32: bool
    #: when the upload was started (Unix time, this host's clock): for people reading the record
    started_at: float = 0.0
    #: the ids of the other uploads of ``key`` under way when this one was created
    others: tuple[str, ...] | None = None

    @property
    def pending(self) -> bool:
        """True while the upload's id is not known yet (created, or about to be)."""
        return not self.upload_id

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> SavedUpload | None:
        """Return the record in ``raw``, or None when it is not one (it is then ignored)."""
        try:
            data: dict[str, Any] = json.loads(raw)
            source = data["source"]
            return cls(
                upload_id=str(data["upload_id"]),
                bucket=str(data["bucket"]),
                key=str(data["key"]),
                part_size_bytes=int(data["part_size_bytes"]),
                source=None if source is None else FileStat(**source),
                compress=data["compress"],
                crc32=bool(data["crc32"]),
                started_at=float(data.get("started_at", 0.0)),
                others=None if data.get("others") is None else tuple(str(i) for i in data["others"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("ignoring an unreadable multipart upload record: %s", exc)
            return None


class MultipartState(Protocol):
    """Where the engine keeps the multipart upload of one transfer while it runs."""

    def load(self) -> SavedUpload | None:
        """Return the upload an earlier run left under way, if any."""

    def save(self, saved: SavedUpload) -> None:
        """Record ``saved`` (a fresh upload, before its first part); raise if it cannot be kept."""

    def clear(self) -> None:
        """Forget the upload: it was completed or aborted."""


__all__ = ["MultipartState", "SavedUpload"]
