"""Resuming a multipart upload that an earlier run left: the record, the checks, and the aborts.

The record itself (:class:`~s3pod.uploads.SavedUpload`) lives wherever the
caller's :class:`~s3pod.uploads.MultipartState` keeps it (Redis, for the
daemon); this module decides what to do with it. An upload is resumed only when nothing
about it can differ from what this attempt would send: the same object, the same
file (size, mtime, inode, device), no compression, the same part size and checksum mode,
and ETags that are MD5s, so each stored part can be checked against the file's bytes.
Anything else is aborted and started again; an abort that fails keeps the record, so a
later run (or the job's dead-letter or acknowledgement) tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import TransferError, UploadError
from ..localfile import FileStat
from ..settings import TransferSettings
from . import s3calls as s3
from .client import Requester, error_code
from .state import MultipartState, SavedUpload

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resume:
    """What lets a multipart upload survive its process: where it is recorded, and what is sent.

    ``state`` keeps the record; ``source`` is the identity of the file read (None for other
    sources: never resumed); ``compress`` the codec of the stream, if any (never resumed:
    a compressed stream cannot be matched part by part without compressing it again, so
    its old upload is aborted and a new one started).
    """

    state: MultipartState
    source: FileStat | None
    compress: str | None

    def load(self, req: Requester) -> SavedUpload | None:
        """Return the record an earlier run left; a Redis failure fails the attempt (transient)."""
        try:
            return self.state.load()
        except Exception as exc:  # noqa: BLE001 - the state's store (Redis) failed: try again later
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: cannot read the multipart upload record: {exc}",
                bucket=req.bucket,
                key=req.key,
            ) from exc

    def save(self, req: Requester, saved: SavedUpload) -> None:
        try:
            self.state.save(saved)
        except Exception as exc:  # noqa: BLE001 - unrecorded, the upload could be orphaned: do not send
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: cannot record the multipart upload: {exc}",
                bucket=req.bucket,
                key=req.key,
            ) from exc

    def clear(self, req: Requester) -> None:
        """Forget the record; a failure is only logged (the upload it names is settled already)."""
        try:
            self.state.clear()
        except Exception as exc:  # noqa: BLE001 - a stale record is aborted or found gone next time
            logger.warning("could not clear the multipart upload record bucket=%s key=%s: %s", req.bucket, req.key, exc)

    def discard(self, req: Requester, saved: SavedUpload, why: str) -> None:
        """Abort the recorded upload (no longer wanted) and forget it once the store dropped it."""
        logger.info(
            "multipart abandoned bucket=%s key=%s upload_id=%s reason=%s",
            saved.bucket,
            saved.key,
            saved.upload_id or "(being created)",
            why,
        )
        if abort_recorded(req.client, req.settings, saved):
            self.clear(req)

    def unresumable(
        self, saved: SavedUpload, req: Requester, *, part_size_bytes: int, crc32: bool, verify_etag: bool
    ) -> str | None:
        """Return why ``saved`` cannot be resumed by this attempt, or None when it can."""
        if saved.pending:
            return "the run that created it was stopped before it learned its id"
        if (saved.bucket, saved.key) != (req.bucket, req.key):
            return "it was for another object"
        if self.compress is not None or saved.compress is not None:
            return "a compressed stream cannot be matched part by part"
        if self.source is None or saved.source != self.source:
            return "the file changed since"
        if not verify_etag:
            return "the store's ETags are not MD5s (SSE-KMS), so stored parts cannot be checked"
        if saved.part_size_bytes != part_size_bytes:
            return "the part size changed"
        if saved.crc32 != crc32:
            return "the checksum mode changed"
        return None


def abort_upload(client: Any, settings: TransferSettings, bucket: str, key: str, upload_id: str) -> bool:
    """Abort a multipart upload; True once the store holds none of its parts (also when it was gone)."""
    abort = Requester(client, settings, bucket, key, UploadError)
    try:
        abort.call("abort", lambda: s3.abort_multipart_upload(client, bucket, key, upload_id))
    except TransferError as exc:
        if error_code(exc.__cause__ or exc) == "NoSuchUpload":
            return True
        logger.error(
            "could not abort multipart upload bucket=%s key=%s upload_id=%s (its parts stay until "
            "a lifecycle rule removes them, or the job's next run aborts it): %s",
            bucket,
            key,
            upload_id,
            exc,
        )
        return False
    logger.debug("multipart aborted bucket=%s key=%s upload_id=%s", bucket, key, upload_id)
    return True


def uploads_of(req: Requester) -> list[str]:
    """Return the ids of the multipart uploads of exactly ``req.key`` under way on the store."""
    listed = req.call("list uploads", lambda: s3.list_multipart_uploads(req.client, req.bucket, req.key))
    return [upload_id for key, upload_id in listed if key == req.key]


def uploads_before(req: Requester) -> tuple[str, ...] | None:
    """The uploads of ``req.key`` under way before this one, for its pending record (None: not allowed to list)."""
    try:
        return tuple(uploads_of(req))
    except TransferError as exc:
        if exc.transient:
            raise
        return None  # a policy without ListBucketMultipartUploads: then recovery cannot list either


def abort_recorded(client: Any, settings: TransferSettings, saved: SavedUpload) -> bool:
    """Abort the upload ``saved`` names; True once none of it is left on the store.

    A pending record has no id yet: every upload of exactly its key that the store lists,
    other than those under way before it (``saved.others``), is aborted. The store's
    clock plays no part: a store whose clock is wrong still loses the orphan. Another run
    of the same key caught by that fails its attempt and is retried: nothing is lost.
    """
    if not saved.pending:
        return abort_upload(client, settings, saved.bucket, saved.key, saved.upload_id)
    req = Requester(client, settings, saved.bucket, saved.key, UploadError)
    try:
        uploads = uploads_of(req)
    except TransferError as exc:
        logger.error(
            "could not list the multipart uploads of bucket=%s key=%s to abort one whose id was never recorded: %s",
            saved.bucket,
            saved.key,
            exc,
        )
        return not exc.transient  # not allowed to list (AccessDenied): nothing more this record can do
    done = True
    for upload_id in uploads:
        if upload_id not in (saved.others or ()):
            done = abort_upload(client, settings, saved.bucket, saved.key, upload_id) and done
    return done


def abandon_saved_upload(client: Any, settings: TransferSettings, state: MultipartState) -> bool:
    """Abort the upload ``state`` records, if any (a job settled for good); True if there was one.

    The daemon calls this when it dead-letters or acknowledges a job, so a job that ends
    leaves no multipart upload behind, whichever run started it.
    """
    saved = state.load()
    if saved is None:
        return False
    logger.info(
        "multipart abandoned bucket=%s key=%s upload_id=%s reason=the job is settled",
        saved.bucket,
        saved.key,
        saved.upload_id or "(being created)",
    )
    if abort_recorded(client, settings, saved):
        state.clear()
    return True
