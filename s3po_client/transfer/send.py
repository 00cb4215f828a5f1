"""One upload attempt: a single PUT for small bodies, a parallel multipart upload for the rest.

The body is read once, in order, by the calling thread (from the file, or from the
compressor), and cut into parts that a bounded pool hashes and sends; each part is
proven (a checksum the store checks, and its answer compared with s3po's: see
:mod:`.checksums`) and retried alone. The length need not be known in advance: whatever is
still being read when ``multipart_threshold_bytes`` have been read goes multipart (see
:mod:`.multipart`, which also resumes an upload an earlier run left).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..codecs import CompressingReader
from ..errors import TransferError
from ..settings import MAX_OBJECT_BYTES, TransferSettings
from .body import Progress, ProgressReporter, Sent, read_exactly
from .checksums import ChecksumChoice
from .client import Requester
from .headers import etag_is_md5
from .multipart import MultipartUpload
from .results import UploadResult
from .resume import Resume
from .single import put_single
from .sources import CountingReader, Reader, Source
from .state import MultipartState

logger = logging.getLogger(__name__)


def upload_stream(
    req: Requester,
    reader: Reader,
    *,
    object_args: dict[str, Any],
    settings: TransferSettings,
    size_hint: int | None,
    source_done: Callable[[], int],
    progress: ProgressReporter,
    verify_etag: bool,
    before_commit: Callable[[int], None],
    resume: Resume | None = None,
) -> Sent:
    """Send what ``reader`` yields as ``s3://bucket/key``; return what was stored.

    ``source_done()`` says how many source bytes are consumed (for progress);
    ``before_commit(bytes_sent)`` runs after the last byte was read and before the object is
    made visible (it raises when the source changed); ``verify_etag`` is False when the
    store's ETag is not an MD5 (SSE-KMS). With ``resume``, a multipart upload is recorded
    while it runs and one an earlier run left is resumed or aborted (see :class:`Resume`).
    """
    if size_hint is not None and size_hint > MAX_OBJECT_BYTES:
        raise TransferError(
            f"s3://{req.bucket}/{req.key}: {size_hint} bytes is more than S3's 5 TiB limit",
            bucket=req.bucket,
            key=req.key,
            transient=False,
        )
    if req.checksums is None:
        req.checksums = ChecksumChoice(settings.checksum)
    saved = resume.load(req) if resume is not None else None
    threshold = settings.multipart_threshold_bytes
    # A source of known size asks for that many bytes and one more (a file that grew shows
    # it), not for the threshold: an 8 MiB buffer per small file is an mmap, page faults and
    # a munmap each. A file that grew past the threshold is read on to it and goes multipart.
    want = threshold if size_hint is None else min(threshold, size_hint + 1)
    first = read_exactly(reader, want)
    if len(first) == want < threshold:
        first += read_exactly(reader, threshold - want)
    if len(first) < threshold:
        done = source_done()
        if resume is not None and saved is not None:  # the file shrank below the threshold since
            resume.discard(req, saved, "the object now goes in a single PUT")
        before_commit(len(first))
        return put_single(req, first, done, object_args=object_args, verify_etag=verify_etag, progress=progress)
    # Handed over in a list the upload empties: no frame keeps the first buffer alive once
    # its parts are cut (it was held for the whole upload, 16 MiB more than the budget counted).
    head = [first]
    del first
    return MultipartUpload(req, settings, object_args, size_hint, verify_etag, progress, resume, saved).run(
        reader, head, source_done, before_commit
    )


def send_source(
    req: Requester,
    source: Source,
    *,
    object_args: dict[str, Any],
    compress: str | None,
    progress: Progress | None,
    state: MultipartState | None,
) -> UploadResult:
    """One attempt: read ``source`` from its start (compressed if asked), store it; return what was stored.

    With a ``state``, a multipart upload is recorded there while it runs (see :mod:`.resume`).
    """
    settings = req.settings
    counted = CountingReader(source.open())
    resume = None if state is None else Resume(state, source.stat, compress)
    reader: Reader = CompressingReader(counted, compress, settings.compress_level) if compress else counted
    size = source.size
    # With compression the stored size is unknown; the source's size bounds it (plus
    # the format's few bytes per block), which is all part sizing needs.
    hint = None if size is None else (size + size // 100 + 1024 * 1024 if compress else size)
    reporter = ProgressReporter(progress, size)
    reporter.advance_to(0)
    sent = upload_stream(
        req,
        reader,
        object_args=object_args,
        settings=settings,
        size_hint=hint,
        source_done=lambda: counted.count,
        progress=reporter,
        verify_etag=etag_is_md5(object_args),
        before_commit=lambda _sent: source.check_unchanged(counted.count, req.bucket, req.key),
        resume=resume,
    )
    logger.debug(
        "uploaded bucket=%s key=%s read=%d sent=%d parts=%d",
        req.bucket,
        req.key,
        counted.count,
        sent.bytes_sent,
        sent.parts,
    )
    return UploadResult(
        bucket=req.bucket,
        key=req.key,
        bytes_read=counted.count,
        bytes_sent=sent.bytes_sent,
        etag=sent.etag,
        source=source.stat,
        source_path=getattr(source, "real_path", None),
    )
