"""``TransferEngine``: uploads, downloads and listings, retried, with one boto3 client shared by every thread."""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, BinaryIO, Literal, TypeVar

from ..codecs import DECODABLE
from ..errors import DownloadError, JobError, SourceChangedError, TransferError, UploadError
from ..localfile import FileStat
from ..retry import RetryPolicy
from ..settings import S3Settings, TransferSettings
from . import s3calls as s3
from .attempts import run_attempts
from .bandwidth import Limiter
from .body import Progress
from .checksums import ChecksumChoice
from .client import Requester, make_client
from .direct_put import DirectPut
from .fetch import Target, download_stream
from .headers import object_args
from .memory import return_large_buffers_to_the_os
from .parts import clean_etag
from .results import Bucket, DownloadResult, StoredObject, UploadResult
from .resume import abandon_saved_upload
from .send import send_source
from .sinks import Output, StreamOutput, atomic_file
from .sources import BytesSource, FileobjSource, FileSource, Source
from .state import MultipartState
from .verify import ObjectInfo, head

logger = logging.getLogger(__name__)

T = TypeVar("T")


class TransferEngine:
    """Uploads and downloads, verified and retried, with one boto3 client built on first use.

    One engine is meant to be shared: its methods may be called from many threads at once.
    Each transfer uses its own small pool of ``settings.max_concurrency`` threads for parts.

    >>> engine = TransferEngine(S3Settings(endpoint_url="http://127.0.0.1:8333"),
    ...                         TransferSettings(part_size_bytes=16 * 1024 * 1024))
    >>> engine.close()   # nothing was built yet: boto3 is imported on the first transfer
    """

    def __init__(
        self,
        s3: S3Settings | None = None,
        settings: TransferSettings | None = None,
        retry: RetryPolicy | None = None,
        *,
        limiter: Limiter | None = None,
    ) -> None:
        self.s3 = s3 or S3Settings()
        self.settings = settings or TransferSettings()
        self.retry = retry or RetryPolicy()
        self.limiter = limiter or Limiter()  # share one among a process's engines: one limit
        self._client: Any = None
        self._direct_put: Any = None
        self._checksums = ChecksumChoice(self.settings.checksum)  # in mode "auto" learned from the store's answers
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    return_large_buffers_to_the_os()
                    client = make_client(self.s3, self.settings)
                    self._direct_put = DirectPut.for_client(client, self.settings, self.s3.endpoint_url)
                    self._client = client
        return self._client

    def close(self) -> None:
        """Close the client's connections; the engine builds a new client if used again."""
        with self._lock:
            client, self._client = self._client, None
            direct, self._direct_put = self._direct_put, None
        if direct is not None:
            direct.close()
        if client is not None:
            client.close()

    # -- uploads ---------------------------------------------------------------------

    def upload_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        headers: Mapping[str, str] | None = None,
        compress: str | None = None,
        retries: int = 0,
        silent: bool = False,
        progress: Progress | None = None,
        allow_dirs: Sequence[str] = (),
        opened: tuple[BinaryIO, str] | None = None,
        multipart_state: MultipartState | None = None,
    ) -> UploadResult | Literal[False]:
        """Store the file at ``path`` as ``s3://bucket/key`` and return what was stored.

        Small files go in one PUT; from ``settings.multipart_threshold_bytes`` on, as a multipart upload whose parts
        go in parallel and are retried alone. ``compress`` (``"gzip"``, ``"zlib"``, ``"zstd"``) compresses on the
        way, streaming, and sets Content-Encoding. ``headers`` set the object's Content-Type (guessed from the key
        when absent), Cache-Control, metadata, … (see ``headers.object_args``); one s3po cannot map raises
        ``JobError`` before any byte is sent. ``retries`` more attempts follow a transient failure,
        ``retry.delay_s(n)`` apart; a permanent one (no such bucket, access denied, missing file) fails at once.
        Raises ``UploadError``, ``SourceChangedError`` (the file changed while it was sent) or
        ``VerificationError``; with ``silent=True`` logs and returns False instead. ``progress(done, total)`` gets
        the source bytes stored so far, from the engine's threads.

        The file is read through a descriptor opened with ``O_NOFOLLOW`` and checked (a regular file, inside
        ``allow_dirs`` when given: see ``localfile.open_checked``); ``opened`` is such a file already opened by the
        caller, read by the first attempt. ``s3po_client.settle.delete_uploaded(result)`` deletes the file read if
        it is unchanged.

        ``multipart_state`` (the daemon's :class:`~s3pod.uploads.JobUploads`) records a multipart upload while it
        runs, so the next call for the same job resumes it (the file unchanged) or aborts it: a killed process
        leaves no parts behind.

        >>> result = engine.upload_file("logs", "2024/06/01/app.log.gz", "/var/log/app.log",
        ...                             compress="gzip", headers={"Content-Type": "text/plain"})
        >>> result.bytes_read, result.bytes_sent     # doctest: +SKIP
        (104857600, 9230411)
        """
        path = os.fspath(path)
        return self._upload(
            bucket,
            key,
            FileSource(path, allow_dirs, opened),
            key or path,
            headers,
            compress,
            retries,
            silent,
            progress,
            multipart_state,
        )

    def upload_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        *,
        headers: Mapping[str, str] | None = None,
        compress: str | None = None,
        retries: int = 0,
        silent: bool = False,
        progress: Progress | None = None,
    ) -> UploadResult | Literal[False]:
        """Store ``data`` (a ``str`` as UTF-8) as ``s3://bucket/key``; as ``upload_file`` otherwise.

        >>> engine.upload_bytes("site", "index.html", "<h1>hi</h1>", compress="gzip",
        ...                     headers={"Cache-Control": "max-age=60"}).etag   # doctest: +SKIP
        '6f0b2c…'
        """
        return self._upload(bucket, key, BytesSource(data), key, headers, compress, retries, silent, progress)

    def upload_fileobj(
        self,
        bucket: str,
        key: str,
        fileobj: IO[bytes] | Any,
        *,
        headers: Mapping[str, str] | None = None,
        compress: str | None = None,
        retries: int = 0,
        silent: bool = False,
        progress: Progress | None = None,
    ) -> UploadResult | Literal[False]:
        """Store what ``fileobj.read()`` yields, from where it stands, as ``s3://bucket/key``.

        The length need not be known: a pipe or socket works, read in bounded memory. A retry
        needs a seekable object (it starts again from the position at the call); a
        non-seekable one gets no retry. As ``upload_file`` otherwise.

        >>> with open("/var/log/app.log", "rb") as f:
        ...     engine.upload_fileobj("logs", "app.log.zst", f, compress="zstd")   # doctest: +SKIP
        UploadResult(bucket='logs', key='app.log.zst', ...)
        """
        return self._upload(bucket, key, FileobjSource(fileobj), key, headers, compress, retries, silent, progress)

    def _upload(
        self,
        bucket: str,
        key: str,
        source: Source,
        name: str,
        headers: Mapping[str, str] | None,
        compress: str | None,
        retries: int,
        silent: bool,
        progress: Progress | None,
        multipart_state: MultipartState | None = None,
    ) -> UploadResult | Literal[False]:
        try:
            args = object_args(headers, compress=compress, name=name)

            def run() -> UploadResult:
                req = self._requester(bucket, key, UploadError)
                return send_source(
                    req, source, object_args=args, compress=compress, progress=progress, state=multipart_state
                )

            return self._attempts(bucket, key, retries, UploadError, source.rereadable, run)
        except (TransferError, JobError) as exc:
            if silent:
                logger.warning("upload failed bucket=%s key=%s error=%s", bucket, key, exc)
                return False
            raise
        finally:
            source.close()

    # -- downloads -------------------------------------------------------------------

    def get_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        raw: bool = False,
        retries: int = 0,
        progress: Progress | None = None,
    ) -> DownloadResult:
        """Fetch ``s3://bucket/key`` into the file ``path``; return what was fetched and verified.

        Atomic: the bytes go to a temporary file beside ``path`` (parent directories are created), which replaces
        ``path`` only once the download is complete and verified; a failed download leaves nothing at ``path``. A
        Content-Encoding of ``gzip``, ``deflate`` or ``zstd`` is decoded unless ``raw=True``. Large objects come as
        parallel ranged GETs, written at their offsets as they arrive (in order when decoding). ``progress(done,
        total)`` counts stored bytes. Raises ``DownloadError`` (or ``VerificationError``), after ``retries`` more
        attempts for a transient failure. With ``settings.fsync_downloads`` the file is flushed to disk before the
        rename. ``result.verified`` says what the bytes were checked against (see ``DownloadResult``).

        >>> engine.get_file("logs", "2024/06/01/app.log.gz", "/tmp/app.log").verified   # doctest: +SKIP
        'md5'
        """
        target = os.path.abspath(os.fspath(path))

        def run() -> DownloadResult:
            with atomic_file(target, fsync=self.settings.fsync_downloads) as output:
                result = self._download_once(bucket, key, output, raw, progress)
            return replace(result, path=target)

        return self._attempts(bucket, key, retries, DownloadError, True, run)

    def download_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        raw: bool = False,
        retries: int = 0,
        progress: Progress | None = None,
    ) -> str:
        """Fetch ``s3://bucket/key`` into the file ``path`` and return ``path``; as ``get_file`` otherwise."""
        self.get_file(bucket, key, path, raw=raw, retries=retries, progress=progress)
        return os.fspath(path)

    def download_bytes(self, bucket: str, key: str, *, raw: bool = False, retries: int = 0) -> bytes:
        """Return the contents of ``s3://bucket/key``, decoded unless ``raw``; as ``get_file`` otherwise."""

        def run() -> bytes:
            out = io.BytesIO()
            self._download_once(bucket, key, StreamOutput(out, rewind_to=0), raw, None)
            return out.getvalue()

        return self._attempts(bucket, key, retries, DownloadError, True, run)

    def get_fileobj(
        self, bucket: str, key: str, fileobj: IO[bytes] | Any, *, raw: bool = False, retries: int = 0
    ) -> DownloadResult:
        """Write the contents of ``s3://bucket/key`` to ``fileobj``; return what was fetched and verified.

        The bytes are written in order as they arrive (verified at the end: on a failure some may already be
        written). A retry rewinds and truncates a seekable ``fileobj`` to where it stood; a non-seekable one gets no
        retry.
        """
        output = StreamOutput.where_it_stands(fileobj)

        def run() -> DownloadResult:
            if output.opened:  # a retry: what the failed attempt wrote goes
                output.restart()
            return self._download_once(bucket, key, output, raw, None)

        return self._attempts(bucket, key, retries, DownloadError, output.restartable, run)

    def download_fileobj(
        self, bucket: str, key: str, fileobj: IO[bytes] | Any, *, raw: bool = False, retries: int = 0
    ) -> int:
        """Write the contents of ``s3://bucket/key`` to ``fileobj``; return the bytes written (see ``get_fileobj``).

        >>> with open("/tmp/index.html", "wb") as f:
        ...     engine.download_fileobj("site", "index.html", f)   # doctest: +SKIP
        11
        """
        return self.get_fileobj(bucket, key, fileobj, raw=raw, retries=retries).bytes_written

    def _download_once(
        self, bucket: str, key: str, output: Output, raw: bool, progress: Progress | None
    ) -> DownloadResult:
        """One attempt: the stored bytes into ``output``, decoded (unless ``raw``); return what was fetched."""

        def start(info: ObjectInfo) -> Target:  # called after HEAD, before the first byte
            encoding = (info.content_encoding or "").strip().lower()
            return output.open(encoding if not raw and encoding in DECODABLE else None)

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)

        req = self._requester(bucket, key, DownloadError)
        try:
            fetched = download_stream(req, settings=self.settings, on_start=start, progress=report)
            output.finish()
        except ValueError as exc:  # the stored bytes are not valid for their Content-Encoding
            raise DownloadError(
                f"s3://{bucket}/{key}: cannot decode the stored object: {exc}", bucket=bucket, key=key, transient=False
            ) from exc
        info = fetched.info
        written = output.bytes_written
        return DownloadResult(
            bucket=bucket,
            key=key,
            bytes_stored=info.size,
            bytes_written=info.size if written is None else written,
            etag=clean_etag(info.etag),
            verified=fetched.verified,
        )

    # -- what is stored ----------------------------------------------------------------

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Return what the store says of ``s3://bucket/key``: size, ETag, encoding, checksums (raises DownloadError)."""
        return head(self._requester(bucket, key, DownloadError))

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[StoredObject]:
        """Yield every object whose key starts with ``prefix``, in key order (raises DownloadError).

        A page of 1,000 is asked for at a time, each request retried alone on a transient failure.
        """
        req = self._requester(bucket, prefix, DownloadError)
        token: str | None = None
        while True:
            page, token = req.call("list", functools.partial(s3.list_objects_page, req.client, bucket, prefix, token))
            yield from page
            if token is None:
                return

    def list_buckets(self) -> list[Bucket]:
        """Return the buckets these credentials can list (raises DownloadError)."""
        req = self._requester("", "", DownloadError)
        return req.call("list buckets", lambda: s3.list_buckets(req.client))

    def abandon_upload(self, state: MultipartState) -> bool:
        """Abort the multipart upload ``state`` records, if any, and forget it; True if there was one.

        For a transfer settled for good (acknowledged or dead-lettered): whichever run started
        the upload, no parts stay behind. A record whose upload cannot be aborted now is kept.
        """
        return abandon_saved_upload(self.client, self.settings, state)

    def warm_up(self) -> None:
        """Build the boto3 client now (about half a second), not during the first transfer."""
        _ = self.client

    def _requester(self, bucket: str, key: str, error_cls: type[TransferError]) -> Requester:
        client, direct, choice, limiter = self.client, self._direct_put, self._checksums, self.limiter
        return Requester(
            client, self.settings, bucket, key, error_cls, direct_put=direct, checksums=choice, limiter=limiter
        )

    def _attempts(
        self,
        bucket: str,
        key: str,
        retries: int,
        error_cls: type[TransferError],
        rereadable: bool,
        run: Callable[[], T],
    ) -> T:
        return run_attempts(
            run, bucket=bucket, key=key, retries=retries, error_cls=error_cls, rereadable=rereadable, policy=self.retry
        )


__all__ = ["FileStat", "SourceChangedError", "TransferEngine", "UploadResult"]
