"""A multipart upload: created (or resumed), parts sent in parallel and retried alone, completed — or aborted.

Given a :class:`~.resume.Resume`, the upload is recorded before its first part is sent
and forgotten once completed or aborted, so one that was cut short (the process killed)
is found by the next attempt: resumed when the file is the same (only the parts the store
lacks, or holds with other bytes, are sent again), aborted and started again when it is
not, or when the stream is compressed.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from ..errors import TransferError, VerificationError
from ..settings import MAX_PARTS, TransferSettings
from . import s3calls as s3
from .bandwidth import LimitedBody
from .body import Body, ProgressReporter, Sent
from .buffers import PartBuffers, PartReader
from .checksums import REFUSAL_CODES, ChecksumChoice
from .client import Requester, error_code
from .parts import b64, clean_etag, composite_crc32, is_plain_md5, multipart_etag, part_size_for
from .resume import Resume, abort_upload, uploads_before
from .single import check_acknowledged
from .sources import Reader
from .state import SavedUpload

logger = logging.getLogger(__name__)


class MultipartUpload:
    """One multipart upload: create (or resume), parts in parallel (each retried alone), complete — or abort."""

    def __init__(
        self,
        req: Requester,
        settings: TransferSettings,
        object_args: dict[str, Any],
        size_hint: int | None,
        verify_etag: bool,
        progress: ProgressReporter,
        resume: Resume | None = None,
        saved: SavedUpload | None = None,
    ) -> None:
        self.req = req
        self.settings = settings
        self.object_args = object_args
        self.size_hint = size_hint
        self.verify_etag = verify_etag
        self.progress = progress
        self.checksums: ChecksumChoice = req.checksums
        direct = req.direct_put
        #: the lean request for parts (``direct_put.DirectPut``), where the engine has one
        self.direct = direct if direct is not None and direct.accepts(object_args) else None
        #: whether the upload is created with CRC32 checksums: then every part carries one
        self.crc = self.checksums.sends_crc32()
        self.upload_id: str | None = None
        #: part number → (MD5 if computed, CRC32, ETag) of each part stored; never the part's bytes
        self.done: dict[int, tuple[bytes | None, str | None, str]] = {}
        self._slots = threading.Semaphore(settings.max_concurrency)
        self._failure: BaseException | None = None
        self.resume = resume
        self.saved = saved
        #: part number → (size, ETag) of the parts a resumed upload holds already
        self.stored: dict[int, tuple[int, str]] = {}
        self.reused = [0, 0]  # parts, bytes found stored and not sent again

    def run(
        self, reader: Reader, head: list[bytes], source_done: Callable[[], int], before_commit: Callable[[int], None]
    ) -> Sent:
        if not self._resume():
            self._create()
        try:
            sent = self._send_parts(reader, head, source_done)
            before_commit(sent)
            return self._complete(sent)
        except BaseException:
            self.req.cancelled.set()
            self._abort()
            raise

    def _create(self) -> None:
        """Create the upload; with a state, record it first as pending, then with its id.

        Recorded before the request, a run killed before it learns the id still leaves a
        record, from which the next run finds the upload by listing the key's uploads: the
        record names those under way before (see ``resume.abort_recorded``).
        """
        req, resume = self.req, self.resume
        pending = None
        if resume is not None:
            pending = SavedUpload(
                upload_id="",
                bucket=req.bucket,
                key=req.key,
                part_size_bytes=self._part_size(),
                source=resume.source,
                compress=resume.compress,
                crc32=self.crc,
                started_at=time.time(),
                others=uploads_before(req),
            )
            resume.save(req, pending)
        self.upload_id = req.call("create", self._create_request)
        logger.debug("multipart started bucket=%s key=%s upload_id=%s", req.bucket, req.key, self.upload_id)
        if resume is not None and pending is not None:
            try:
                # before the first part; with the checksum the store took (it may have refused CRC32)
                resume.save(req, replace(pending, upload_id=self.upload_id, crc32=self.crc))
            except BaseException:
                self._abort()
                raise

    def _create_request(self) -> str:
        req = self.req
        try:
            return s3.create_multipart_upload(
                req.client, req.bucket, req.key, checksum_crc32=self.crc, object_args=self.object_args
            )
        except Exception as exc:
            if self.crc and self.checksums.learning and error_code(exc) in REFUSAL_CODES:
                self.checksums.store_ignores_crc32(str(req.client.meta.endpoint_url))
                self.crc = False
                raise TransferError(
                    f"s3://{req.bucket}/{req.key}: the store refused CRC32 checksums "
                    f"({error_code(exc)}): created again with MD5s",
                    bucket=req.bucket,
                    key=req.key,
                ) from exc
            raise

    def _part_size(self) -> int:
        return part_size_for(1, base_bytes=self.settings.part_size_bytes, size_hint=self.size_hint)

    def _resume(self) -> bool:
        """Take over the upload an earlier run left, if it can be resumed; True if so.

        One that cannot (the file changed, compressed, gone from the store) is aborted.
        """
        req, resume, saved = self.req, self.resume, self.saved
        if resume is None or saved is None:
            return False
        if self.checksums.mode == "auto":
            self.crc = saved.crc32  # either proof resumes: the parts stored are compared by MD5
        why = resume.unresumable(
            saved, req, part_size_bytes=self._part_size(), crc32=self.crc, verify_etag=self.verify_etag
        )
        if why is None:
            try:
                self.stored = req.call(
                    "list parts", lambda: s3.list_parts(req.client, req.bucket, req.key, saved.upload_id)
                )
            except TransferError as exc:
                if error_code(exc.__cause__ or exc) != "NoSuchUpload":
                    raise  # the store is away: the record stays for the next attempt
                why = "the store has no such upload any more"
        if why is not None:
            resume.discard(req, saved, why)
            self.crc = self.checksums.sends_crc32()  # a new upload takes the proof of now
            return False
        self.upload_id = saved.upload_id
        logger.info(
            "multipart resumed bucket=%s key=%s upload_id=%s parts_stored=%d",
            req.bucket,
            req.key,
            saved.upload_id,
            len(self.stored),
        )
        return True

    def _send_parts(self, reader: Reader, head: list[bytes], source_done: Callable[[], int]) -> int:
        # Each part is read into a buffer lent for as long as it is in flight (tried again
        # from it), then given back: one buffer per part in flight plus the one being read.
        buffers = PartBuffers(self.settings.max_concurrency + 1)
        parts = PartReader(reader, head.pop(), buffers)
        sent = 0
        number = 1
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="s3po-part") as pool:
            try:
                while True:
                    size = part_size_for(number, base_bytes=self.settings.part_size_bytes, size_hint=self.size_hint)
                    buf, n = parts.next(size)
                    if n == 0 and number > 1:
                        buffers.give_back(buf)
                        break
                    self._check_part_count(number)
                    data = memoryview(buf)[:n]
                    done = source_done()
                    if number in self.stored and self._reuse(
                        number, Body.of(data, md5=True, crc32=self.crc, source_done=done)
                    ):
                        buffers.give_back(buf)
                    else:
                        while not self._slots.acquire(timeout=0.2):
                            self._raise_if_failed()
                        self._raise_if_failed()
                        # The part's checksums are computed by the thread that sends it: they
                        # release the GIL, so hashing runs on every core, not serially with the reads.
                        release = functools.partial(buffers.give_back, buf)
                        futures.append(pool.submit(self._send_part, number, data, done, release))
                    sent += n
                    number += 1
                    if n < size:
                        break
            except BaseException:
                self.req.cancelled.set()  # parts waiting to retry give up; queued ones never start
                for f in futures:
                    f.cancel()
                raise
        buffers.clear()
        for f in futures:
            f.result()  # raises the first part's error
        return sent

    def _check_part_count(self, number: int) -> None:
        if number > MAX_PARTS:
            raise TransferError(
                f"s3://{self.req.bucket}/{self.req.key}: more than {MAX_PARTS} parts",
                bucket=self.req.bucket,
                key=self.req.key,
                transient=False,
            )

    def _reuse(self, number: int, body: Body) -> bool:
        """Take part ``number`` as sent if a resumed upload holds exactly these bytes for it."""
        stored = self.stored.get(number)
        if stored is None or stored != (len(body.data), body.md5_digest().hex()):
            return False
        self.done[number] = (body.md5, body.crc32, stored[1])
        self.reused[0] += 1
        self.reused[1] += len(body.data)
        self.progress.advance_to(body.source_done)
        return True

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _send_part(self, number: int, data: memoryview, source_done: int, release: Callable[[], None]) -> None:
        req = self.req
        assert self.upload_id is not None
        upload_id = self.upload_id
        try:
            sent: list[Body] = []

            def attempt() -> str:
                # Built at each try: a try after the store ignored CRC32 carries Content-MD5 too.
                body = Body.of(data, md5=self.checksums.sends_md5(), crc32=self.crc, source_done=source_done)
                sent[:] = [body]
                md5_header = b64(body.md5) if body.md5 is not None else None
                if self.direct is not None:
                    response = self.direct.upload_part(
                        req.bucket,
                        req.key,
                        upload_id,
                        number,
                        data,
                        content_md5=md5_header,
                        checksum_crc32=body.crc32,
                        limit=req.limiter.up,
                    )
                else:  # boto3 takes bytes or a file, not a view: a file reading the buffer, no copy of it
                    payload = LimitedBody(data, req.limiter.up)
                    response = s3.upload_part(
                        req.client,
                        req.bucket,
                        req.key,
                        upload_id,
                        number,
                        payload,
                        content_md5=md5_header,
                        checksum_crc32=body.crc32,
                    )
                etag = clean_etag(response.get("ETag"))
                check_acknowledged(req, f"part {number}", etag, body, response, self.verify_etag)
                return etag

            etag = req.call(f"part {number}", attempt)
            self.done[number] = (sent[0].md5, sent[0].crc32, etag)
            self.progress.advance_to(source_done)
        except BaseException as exc:
            if self._failure is None:
                self._failure = exc
            self.req.cancelled.set()
            raise
        finally:
            release()
            self._slots.release()

    def _complete(self, sent: int) -> Sent:
        req = self.req
        assert self.upload_id is not None
        upload_id = self.upload_id
        numbers = sorted(self.done)
        parts: list[dict[str, Any]] = []
        for n in numbers:
            _, crc32, etag = self.done[n]
            part: dict[str, Any] = {"PartNumber": n, "ETag": f'"{etag}"'}
            if crc32 is not None:
                part["ChecksumCRC32"] = crc32
            parts.append(part)
        crcs = [self.done[n][1] for n in numbers]
        response = req.call(
            "complete", lambda: s3.complete_multipart_upload(req.client, req.bucket, req.key, upload_id, parts)
        )
        etag = clean_etag(response.get("ETag"))
        # Each part was proven when it was sent; this checks the store assembled exactly those
        # parts: the multipart ETag from the parts' MD5s, ours or (parts proven by CRC32) the store's.
        proven = [
            self.done[n][0]
            if self.done[n][0] is not None
            else bytes.fromhex(self.done[n][2])
            if is_plain_md5(self.done[n][2])
            else None
            for n in numbers
        ]
        expected = multipart_etag(d for d in proven if d is not None) if None not in proven else etag
        if self.verify_etag and "-" in etag and etag != expected:
            raise VerificationError(
                f"s3://{req.bucket}/{req.key}: the store's ETag {etag!r} is not the one of the parts sent ({expected})",
                bucket=req.bucket,
                key=req.key,
            )
        stored_crc = response.get("ChecksumCRC32")
        if self.crc and stored_crc and "-" in stored_crc and stored_crc != composite_crc32(c for c in crcs if c):
            raise VerificationError(
                f"s3://{req.bucket}/{req.key}: the store's CRC32 {stored_crc} is not the one of the parts sent",
                bucket=req.bucket,
                key=req.key,
            )
        if self.resume is not None:
            self.resume.clear(req)
        logger.debug(
            "multipart completed bucket=%s key=%s parts=%d bytes=%d reused_parts=%d reused_bytes=%d",
            req.bucket,
            req.key,
            len(numbers),
            sent,
            self.reused[0],
            self.reused[1],
        )
        return Sent(
            etag=etag, bytes_sent=sent, parts=len(numbers), parts_reused=self.reused[0], bytes_reused=self.reused[1]
        )

    def _abort(self) -> None:
        """Abort the upload (a failed attempt); forget its record once the store dropped it."""
        if self.upload_id is None:
            return
        req = self.req
        if abort_upload(req.client, req.settings, req.bucket, req.key, self.upload_id) and self.resume is not None:
            self.resume.clear(req)
