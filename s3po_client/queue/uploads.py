"""The multipart upload a job has under way, kept in Redis so a killed daemon's upload is resumed, not orphaned.

A multipart upload that nobody completes or aborts keeps its parts on the store, billed,
until a lifecycle rule removes them. The transfer engine therefore records each multipart
upload it starts (:class:`SavedUpload`, in ``<prefix>:upload:<job id>``) before its first
part is sent, and clears the record once the upload is completed or aborted. Whoever runs
the job next — the same daemon after a restart, another after the reaper put the job back
— finds the record: it resumes that upload (``ListParts``, each stored part checked against
the file's part, only the missing ones sent) or, when the file changed or the upload is
gone, aborts it and starts again. A job that is dead-lettered or acknowledged has its
record's upload aborted too, so no path leaves parts behind.

The engine sees only the small :class:`MultipartState` protocol (``load``, ``save``,
``clear``); :class:`JobUploads` is its Redis implementation, one per job. This module
loads redis-py and the standard library only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis

from ..localfile import FileStat
from .keys import QueueKeys

logger = logging.getLogger(__name__)

#: How long a record outlives a job that nobody runs again: as long as a stored marker
#: (an admin's ``s3po dead retry`` may come days later).
UPLOAD_RECORD_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SavedUpload:
    """A multipart upload under way: its id, target, part size, and what was being sent.

    ``source`` is the local file's identity when the upload began (None for a source that is
    not a file); ``compress`` the codec of the stream sent; ``crc32`` whether the upload was
    created with CRC32 checksums. A resumed upload must match all of them.

    An empty ``upload_id`` is an upload about to be created (recorded before the request,
    so a process killed before it learns the id still leaves a trace): whoever finds it
    aborts the uploads of ``key`` the store lists as initiated since ``started_at``.

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
    #: when the upload was started (Unix time, this host's clock)
    started_at: float = 0.0

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


class JobUploads:
    """The :class:`MultipartState` of one job, in ``<prefix>:upload:<job id>`` (a JSON string with a TTL).

    One SET or DEL each: atomic on its own, and on Redis Cluster in the job's slot with the
    rest of the queue when the prefix is hash-tagged.
    """

    def __init__(self, client: redis.Redis, keys: QueueKeys, job_id: str, ttl_s: int = UPLOAD_RECORD_TTL_S) -> None:
        self.client = client
        self.key = keys.upload(job_id)
        self.ttl_s = ttl_s

    def load(self) -> SavedUpload | None:
        raw = self.client.get(self.key)
        return None if raw is None else SavedUpload.from_json(raw)

    def save(self, saved: SavedUpload) -> None:
        self.client.set(self.key, saved.to_json(), ex=self.ttl_s)

    def clear(self) -> None:
        self.client.delete(self.key)


class SmallFileUploads(JobUploads):
    """The :class:`JobUploads` of a job whose file was too small for multipart when opened: nothing is read first.

    Such a file goes in one PUT, which needs no record, so the daemon skips the round trip
    that would look for an earlier run's: the job's acknowledgement (or dead letter)
    reports one still recorded, and it is aborted then. Should the file grow past the
    threshold while it is read, the first :meth:`save` records the new upload only if no
    earlier one is recorded (SET NX); if one is, it raises, the attempt fails (transient)
    and the next attempt, for a large file now, loads that record and resumes or aborts it.
    """

    def __init__(self, client: redis.Redis, keys: QueueKeys, job_id: str, ttl_s: int = UPLOAD_RECORD_TTL_S) -> None:
        super().__init__(client, keys, job_id, ttl_s)
        self._first_save = True

    def load(self) -> SavedUpload | None:
        return None

    def save(self, saved: SavedUpload) -> None:
        if not self._first_save:
            super().save(saved)
            return
        if not self.client.set(self.key, saved.to_json(), ex=self.ttl_s, nx=True):
            raise RuntimeError(
                "an earlier run's multipart upload of this job is recorded; the next attempt resumes or aborts it"
            )
        self._first_save = False


__all__ = ["JobUploads", "MultipartState", "SavedUpload", "SmallFileUploads", "UPLOAD_RECORD_TTL_S"]
