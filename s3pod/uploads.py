"""The multipart upload a job has under way, kept in Redis (``<prefix>:upload:<job id>``).

The transfer engine remembers a multipart upload through the small
:class:`~s3po_client.transfer.state.MultipartState` protocol (``load``, ``save``,
``clear``); :class:`JobUploads` is its Redis implementation, one per job. Whoever runs the
job next — the same daemon after a restart, another after the reaper put the job back —
finds the record and resumes or aborts that upload. A job that is dead-lettered or
acknowledged has its record's upload aborted too, so no path leaves parts behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from s3po_client.keys import QueueKeys
from s3po_client.transfer.state import SavedUpload

from .consumer import Consumer

logger = logging.getLogger(__name__)

#: How long a record outlives a job that nobody runs again: as long as a stored marker
#: (an admin's ``s3po dead retry`` may come days later).
UPLOAD_RECORD_TTL_S = 7 * 24 * 3600


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
    ``on_multipart`` is called before that first save: the upload is about to hold a
    multipart upload's memory (the daemon raises its reservation then).
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: QueueKeys,
        job_id: str,
        ttl_s: int = UPLOAD_RECORD_TTL_S,
        on_multipart: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(client, keys, job_id, ttl_s)
        self._first_save = True
        self._on_multipart = on_multipart

    def load(self) -> SavedUpload | None:
        return None

    def save(self, saved: SavedUpload) -> None:
        if not self._first_save:
            super().save(saved)
            return
        if self._on_multipart is not None:
            self._on_multipart()
        if not self.client.set(self.key, saved.to_json(), ex=self.ttl_s, nx=True):
            raise RuntimeError(
                "an earlier run's multipart upload of this job is recorded; the next attempt resumes or aborts it"
            )
        self._first_save = False


def record_for(
    shard: Consumer, job_id: str, *, small: bool = False, on_multipart: Callable[[], None] | None = None
) -> JobUploads:
    """The multipart record of a job claimed from ``shard``; for a file too small for multipart, one that reads nothing first.

    A small file goes in one PUT, which needs no record: an earlier run's record is
    aborted when the job is settled (the ack and the dead letter report it), so the read
    before the upload is saved (see :class:`SmallFileUploads`).
    """
    if small:
        return SmallFileUploads(shard.client, shard.keys, job_id, on_multipart=on_multipart)
    return JobUploads(shard.client, shard.keys, job_id)


__all__ = ["UPLOAD_RECORD_TTL_S", "JobUploads", "SmallFileUploads", "record_for"]
