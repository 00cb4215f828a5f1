"""One upload attempt: a single PUT for small bodies, a parallel multipart upload for the rest.

The body is read once, in order, by the calling thread (from the file, or from the
compressor), and cut into parts that a bounded pool hashes and sends; each part is
proven (a checksum the store checks, and its answer compared with s3po's: see
:mod:`.proof`) and retried alone. The length need not be known in advance: whatever is
still being read when ``multipart_threshold_bytes`` have been read goes multipart. A multipart upload that
fails is aborted, so no parts stay behind.

Given a :class:`~s3pod.uploads.MultipartState`, a multipart upload is recorded
before its first part is sent and forgotten once completed or aborted, so one that was cut
short (the process killed) is found by the next attempt: resumed when the file is the same
(only the parts the store lacks, or holds with other bytes, are sent again), aborted and
started again when it is not, or when the stream is compressed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..errors import TransferError, VerificationError
from ..settings import MAX_OBJECT_BYTES, MAX_PARTS, TransferSettings
from . import s3calls as s3
from .parts import b64, clean_etag, composite_crc32, crc32_b64, is_plain_md5, md5, multipart_etag, part_size_for
from .proof import REFUSAL_CODES, Proof
from .resume import Resume, abort_upload, uploads_before
from .s3calls import Requester, error_code
from .sources import Reader
from .state import SavedUpload

logger = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True, slots=True)
class Sent:
    """What one attempt stored: the object's ETag and the bytes sent."""

    etag: str
    bytes_sent: int
    parts: int
    #: parts (and their bytes) a resumed upload found stored already, not sent again
    parts_reused: int = 0
    bytes_reused: int = 0


@dataclass(frozen=True, slots=True)
class Body:
    """One PUT's or part's bytes and the checksums it carries (at least one; see :mod:`.proof`)."""

    data: bytes
    md5: bytes | None
    crc32: str | None
    #: source bytes consumed once this body was cut (for progress, with compression)
    source_done: int

    @classmethod
    def of(cls, data: bytes, *, md5: bool, crc32: bool, source_done: int) -> Body:
        return cls(
            data=data,
            md5=md5_of(data) if md5 or not crc32 else None,
            crc32=crc32_b64(data) if crc32 else None,
            source_done=source_done,
        )

    def md5_digest(self) -> bytes:
        """The MD5 of the bytes, computed now if the body was sent without one."""
        return self.md5 if self.md5 is not None else md5_of(self.data)


def md5_of(data: bytes) -> bytes:
    return md5(data).digest()


def read_exactly(reader: Reader, size: int) -> bytes:
    """Return the next ``size`` bytes of ``reader`` (fewer only at its end)."""
    chunks = []
    left = size
    while left > 0:
        chunk = reader.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ProgressReporter:
    """Calls ``progress(done, total)`` with a done count that only grows, one call at a time."""

    def __init__(self, progress: Progress | None, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def advance_to(self, done: int) -> None:
        if self.progress is None:
            return
        with self._lock:
            if done > self.done or done == 0:
                self.done = done
                self.progress(done, self.total)


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
    if req.proof is None:
        req.proof = Proof(settings.checksum)
    saved = resume.load(req) if resume is not None else None
    first = read_exactly(reader, settings.multipart_threshold_bytes)
    if len(first) < settings.multipart_threshold_bytes:
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


def put_single(
    req: Requester,
    data: bytes,
    source_done: int,
    *,
    object_args: dict[str, Any],
    verify_etag: bool,
    progress: ProgressReporter,
) -> Sent:
    """PUT ``data`` as the whole object; verify the ETag or CRC32 the store returns."""
    lean = req.lean if req.lean is not None and req.lean.accepts(object_args) else None
    proof: Proof = req.proof

    def attempt() -> str:
        # Built at each try: a try after the store ignored the CRC32 header carries Content-MD5.
        body = Body.of(data, md5=proof.sends_md5(), crc32=proof.sends_crc32(), source_done=source_done)
        md5_header = b64(body.md5) if body.md5 is not None else None
        with refusal_learned(req, body):
            if lean is not None:
                response = lean.put(
                    req.bucket,
                    req.key,
                    body.data,
                    content_md5=md5_header,
                    checksum_crc32=body.crc32,
                    object_args=object_args,
                )
            else:
                response = s3.put_object(
                    req.client,
                    req.bucket,
                    req.key,
                    body.data,
                    content_md5=md5_header,
                    checksum_crc32=body.crc32,
                    object_args=object_args,
                )
        etag = clean_etag(response.get("ETag"))
        check_acknowledged(req, "object", etag, body, response, verify_etag)
        return etag

    etag = req.call("put", attempt)  # a PUT whose bytes the store got wrong is sent again
    progress.advance_to(source_done)
    return Sent(etag=etag, bytes_sent=len(data), parts=0)


@contextmanager
def refusal_learned(req: Requester, body: Body) -> Iterator[None]:
    """Turn a store's refusal of the CRC32 header (mode "auto", still learning) into MD5 and a retry."""
    try:
        yield
    except Exception as exc:
        proof: Proof = req.proof
        if body.md5 is None and proof.learning and error_code(exc) in REFUSAL_CODES:
            proof.store_ignores_crc32(str(req.client.meta.endpoint_url))
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: the store refused x-amz-checksum-crc32 "
                f"({error_code(exc)}): sent again with Content-MD5",
                bucket=req.bucket,
                key=req.key,
            ) from exc
        raise


def check_acknowledged(
    req: Requester, what: str, etag: str, body: Body, response: dict[str, Any], verify_etag: bool
) -> None:
    """Raise VerificationError unless the store's answer proves it stored exactly ``body``.

    The proof is the CRC32 the store returns (when the body carried one) or the ETag equal
    to the bytes' MD5 (when the store's ETags are MD5s); a body sent with Content-MD5 alone,
    where the ETag is no MD5 (SSE-KMS), was proven by the store checking that header.
    A VerificationError is transient: the request is sent again (with Content-MD5 once the
    store is known to ignore CRC32).
    """
    where = f"s3://{req.bucket}/{req.key}"
    stored_crc = response.get("ChecksumCRC32")
    if body.crc32 is not None and stored_crc is not None:
        if stored_crc != body.crc32:
            raise VerificationError(
                f"{where}: the store's CRC32 {stored_crc} for {what} is not the CRC32 of the bytes sent ({body.crc32})",
                bucket=req.bucket,
                key=req.key,
            )
        req.proof.store_proves_crc32()
        crc_proven = True
    else:
        crc_proven = False
        if body.md5 is None:
            req.proof.store_ignores_crc32(str(req.client.meta.endpoint_url))
    if verify_etag and (body.md5 is not None or not crc_proven):
        digest = body.md5_digest()
        if etag != digest.hex():
            raise VerificationError(
                f"{where}: the store's ETag {etag!r} for {what} is not the MD5 of the bytes sent ({digest.hex()})",
                bucket=req.bucket,
                key=req.key,
            )
    elif not crc_proven and body.md5 is None:
        raise VerificationError(
            f"{where}: the store returned no CRC32 for {what} and its ETags are not MD5s: sent again with Content-MD5",
            bucket=req.bucket,
            key=req.key,
        )


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
        self.proof: Proof = req.proof
        #: whether the upload is created with CRC32 checksums: then every part carries one
        self.crc = self.proof.sends_crc32()
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
            if self.crc and self.proof.learning and error_code(exc) in REFUSAL_CODES:
                self.proof.store_ignores_crc32(str(req.client.meta.endpoint_url))
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
        if self.proof.mode == "auto":
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
            self.crc = self.proof.sends_crc32()  # a new upload takes the proof of now
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
        pending = memoryview(head.pop())
        sent = 0
        number = 1
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(max_workers=self.settings.max_concurrency, thread_name_prefix="s3po-part") as pool:
            try:
                while True:
                    size = part_size_for(number, base_bytes=self.settings.part_size_bytes, size_hint=self.size_hint)
                    if len(pending) >= size:
                        data, pending = bytes(pending[:size]), pending[size:]
                        if not pending:
                            pending = memoryview(b"")  # the last view of the first buffer: free it
                    else:
                        data = bytes(pending) + read_exactly(reader, size - len(pending))
                        pending = memoryview(b"")
                    if not data and number > 1:
                        break
                    if number > MAX_PARTS:
                        raise TransferError(
                            f"s3://{self.req.bucket}/{self.req.key}: more than {MAX_PARTS} parts",
                            bucket=self.req.bucket,
                            key=self.req.key,
                            transient=False,
                        )
                    done = source_done()
                    if number in self.stored and self._reuse(
                        number, Body.of(data, md5=True, crc32=self.crc, source_done=done)
                    ):
                        sent += len(data)
                        number += 1
                        if len(data) < size:
                            break
                        continue
                    while not self._slots.acquire(timeout=0.2):
                        self._raise_if_failed()
                    self._raise_if_failed()
                    # The part's checksums are computed by the thread that sends it: hashlib and
                    # zlib release the GIL, so hashing runs on every core, not serially with the reads.
                    futures.append(pool.submit(self._send_part, number, data, done))
                    sent += len(data)
                    number += 1
                    if len(data) < size:
                        break
            except BaseException:
                self.req.cancelled.set()  # parts waiting to retry give up; queued ones never start
                for f in futures:
                    f.cancel()
                raise
        for f in futures:
            f.result()  # raises the first part's error
        return sent

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

    def _send_part(self, number: int, data: bytes, source_done: int) -> None:
        req = self.req
        assert self.upload_id is not None
        upload_id = self.upload_id
        try:
            sent: list[Body] = []

            def attempt() -> str:
                # Built at each try: a try after the store ignored CRC32 carries Content-MD5 too.
                body = Body.of(data, md5=self.proof.sends_md5(), crc32=self.crc, source_done=source_done)
                sent[:] = [body]
                response = s3.upload_part(
                    req.client,
                    req.bucket,
                    req.key,
                    upload_id,
                    number,
                    body.data,
                    content_md5=b64(body.md5) if body.md5 is not None else None,
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
