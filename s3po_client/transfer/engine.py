"""``TransferEngine``: uploads and downloads with retries, one boto3 client shared by every thread."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, TypeVar, cast

from ..codecs import DECODABLE, CompressingReader, DecodingWriter
from ..errors import DownloadError, JobError, SourceChangedError, TransferError, UploadError
from ..localfile import FileStat
from ..retry import RetryPolicy
from ..settings import S3Settings, TransferSettings
from .download import ObjectInfo, Target, download_stream
from .headers import etag_is_md5, object_args
from .proof import Proof
from .resume import Resume
from .s3calls import Requester, make_client, translate_error
from .sources import BytesSource, FileobjSource, FileSource, Reader, Source
from .state import MultipartState
from .upload import Progress, ProgressReporter, upload_stream

logger = logging.getLogger(__name__)

T = TypeVar("T")


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


class TransferEngine:
    """Uploads and downloads, verified and retried, with one boto3 client built on first use.

    One engine is meant to be shared: its methods may be called from many threads at once.
    Each transfer uses its own small pool of ``settings.max_concurrency`` threads for parts.

    >>> engine = TransferEngine(S3Settings(endpoint_url="http://127.0.0.1:8333"),
    ...                         TransferSettings(part_size_bytes=16 * 1024 * 1024))
    >>> engine.close()   # nothing was built yet: boto3 is imported on the first transfer
    """

    def __init__(
        self, s3: S3Settings | None = None, settings: TransferSettings | None = None, retry: RetryPolicy | None = None
    ) -> None:
        self.s3 = s3 or S3Settings()
        self.settings = settings or TransferSettings()
        self.retry = retry or RetryPolicy()
        self._client: Any = None
        self._lean: Any = None
        #: which checksums uploads send; in mode "auto" learned once from the store's answers
        self._proof = Proof(self.settings.checksum)
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, built on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    return_large_buffers_to_the_os()
                    client = make_client(self.s3, self.settings)
                    if self.settings.lean_put:
                        from .lean import LeanPutter

                        self._lean = LeanPutter.for_client(client, self.settings, self.s3.endpoint_url)
                    self._client = client
        return self._client

    def close(self) -> None:
        """Close the client's connections; the engine builds a new client if used again.

        >>> TransferEngine().close()
        """
        with self._lock:
            client, self._client = self._client, None
            lean, self._lean = self._lean, None
        if lean is not None:
            lean.close()
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

        Small files go in one PUT; from ``settings.multipart_threshold_bytes`` on, as a
        multipart upload whose parts go in parallel and are retried alone. ``compress``
        (``"gzip"``, ``"zlib"``, ``"zstd"``) compresses on the way, streaming, and sets
        Content-Encoding. ``headers`` set the object's Content-Type (guessed from the key
        when absent), Cache-Control, metadata, … (see ``headers.object_args``); one s3po
        cannot map raises ``JobError`` before any byte is sent. ``retries`` more attempts
        follow a transient failure, ``retry.delay_s(n)`` apart; a permanent one (no such
        bucket, access denied, missing file) fails at once. Raises ``UploadError``,
        ``SourceChangedError`` (the file changed while it was sent) or ``VerificationError``;
        with ``silent=True`` logs and returns False instead. ``progress(done, total)`` gets the
        source bytes stored so far, from the engine's threads.

        The file is read through a descriptor opened with ``O_NOFOLLOW`` and checked (a
        regular file, inside ``allow_dirs`` when given: see ``localfile.open_checked``);
        ``opened`` is such a file already opened by the caller, read by the first attempt.
        ``s3po_client.settle.delete_uploaded(result)`` deletes the file read if it is unchanged.

        ``multipart_state`` (the daemon's :class:`~s3pod.uploads.JobUploads`)
        records a multipart upload while it runs, so the next call for the same job resumes
        it (the file unchanged) or aborts it: a killed process leaves no parts behind.

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
            headers=headers,
            compress=compress,
            retries=retries,
            silent=silent,
            progress=progress,
            name=key or path,
            multipart_state=multipart_state,
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
        return self._upload(
            bucket,
            key,
            BytesSource(data),
            headers=headers,
            compress=compress,
            retries=retries,
            silent=silent,
            progress=progress,
            name=key,
        )

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
        return self._upload(
            bucket,
            key,
            FileobjSource(fileobj),
            headers=headers,
            compress=compress,
            retries=retries,
            silent=silent,
            progress=progress,
            name=key,
        )

    def _upload(
        self,
        bucket: str,
        key: str,
        source: Source,
        *,
        headers: Mapping[str, str] | None,
        compress: str | None,
        retries: int,
        silent: bool,
        progress: Progress | None,
        name: str,
        multipart_state: MultipartState | None = None,
    ) -> UploadResult | Literal[False]:
        try:
            args = object_args(headers, compress=compress, name=name)
            return self._attempts(
                bucket,
                key,
                retries,
                UploadError,
                rereadable=source.rereadable,
                run=lambda: self._upload_once(bucket, key, source, args, compress, progress, multipart_state),
            )
        except (TransferError, JobError) as exc:
            if silent:
                logger.warning("upload failed bucket=%s key=%s error=%s", bucket, key, exc)
                return False
            raise
        finally:
            source.close()

    def _upload_once(
        self,
        bucket: str,
        key: str,
        source: Source,
        args: dict[str, Any],
        compress: str | None,
        progress: Progress | None,
        multipart_state: MultipartState | None = None,
    ) -> UploadResult:
        raw = source.open()
        counted = _CountingReader(raw)
        reader: Reader = CompressingReader(counted, compress, self.settings.compress_level) if compress else counted
        size = source.size
        # With compression the stored size is unknown; the source's size bounds it (plus
        # the format's few bytes per block), which is all part sizing needs.
        hint = None if size is None else (size + size // 100 + 1024 * 1024 if compress else size)
        reporter = ProgressReporter(progress, size)
        reporter.advance_to(0)
        req = Requester(self.client, self.settings, bucket, key, UploadError, lean=self._lean, proof=self._proof)
        sent = upload_stream(
            req,
            reader,
            object_args=args,
            settings=self.settings,
            size_hint=hint,
            source_done=lambda: counted.count,
            progress=reporter,
            verify_etag=etag_is_md5(args),
            before_commit=lambda _sent: source.check_unchanged(counted.count, bucket, key),
            resume=None if multipart_state is None else Resume(multipart_state, source.stat, compress),
        )
        logger.debug(
            "uploaded bucket=%s key=%s read=%d sent=%d parts=%d",
            bucket,
            key,
            counted.count,
            sent.bytes_sent,
            sent.parts,
        )
        return UploadResult(
            bucket=bucket,
            key=key,
            bytes_read=counted.count,
            bytes_sent=sent.bytes_sent,
            etag=sent.etag,
            source=source.stat,
            source_path=getattr(source, "real_path", None),
        )

    # -- downloads -------------------------------------------------------------------

    def download_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        raw: bool = False,
        retries: int = 0,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> str:
        """Fetch ``s3://bucket/key`` into the file ``path`` and return ``path``.

        Atomic: the bytes go to a temporary file beside ``path`` (parent directories are
        created), which replaces ``path`` only once the download is complete and verified;
        a failed download leaves nothing at ``path``. A Content-Encoding of ``gzip``,
        ``deflate`` or ``zstd`` is decoded unless ``raw=True``. Large objects come as parallel
        ranged GETs, written at their offsets as they arrive (in order when decoding).
        ``progress(done, total)`` counts stored bytes. Raises ``DownloadError`` (or
        ``VerificationError``), after ``retries`` more attempts for a transient failure.
        With ``settings.fsync_downloads`` the file is flushed to disk before the rename.

        >>> engine.download_file("logs", "2024/06/01/app.log.gz", "/tmp/app.log")   # doctest: +SKIP
        '/tmp/app.log'
        """
        target = os.path.abspath(os.fspath(path))

        def run() -> str:
            parent = os.path.dirname(target)
            os.makedirs(parent, exist_ok=True)
            temp = os.path.join(parent, f".{os.path.basename(target)}.{secrets.token_hex(4)}.s3po-tmp")
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                output = _FileOutput(fd)
                try:
                    self._download_once(bucket, key, output, raw, progress)
                    output.flush()
                    if self.settings.fsync_downloads:
                        os.fsync(fd)
                finally:
                    # Its buffer goes to the temporary file now, while the descriptor is still
                    # ours: left to the garbage collector, a failed download's buffered bytes
                    # were written later into whatever reused the number (a Redis socket).
                    output.close()
                    os.close(fd)
                os.replace(temp, target)
            except BaseException:
                try:
                    os.unlink(temp)
                except FileNotFoundError:
                    pass
                raise
            return target

        self._attempts(bucket, key, retries, DownloadError, rereadable=True, run=run)
        return os.fspath(path)

    def download_bytes(self, bucket: str, key: str, *, raw: bool = False, retries: int = 0) -> bytes:
        """Return the contents of ``s3://bucket/key``, decoded unless ``raw``; as ``download_file`` otherwise.

        >>> engine.download_bytes("site", "index.html")   # doctest: +SKIP
        b'<h1>hi</h1>'
        """
        import io

        def run() -> bytes:
            out = io.BytesIO()
            self._download_once(bucket, key, _StreamOutput(out, rewind_to=0), raw, None)
            return out.getvalue()

        return self._attempts(bucket, key, retries, DownloadError, rereadable=True, run=run)

    def download_fileobj(
        self, bucket: str, key: str, fileobj: IO[bytes] | Any, *, raw: bool = False, retries: int = 0
    ) -> int:
        """Write the contents of ``s3://bucket/key`` to ``fileobj``; return the bytes written.

        The bytes are written in order as they arrive (verified at the end: on a failure some
        may already be written). A retry rewinds and truncates a seekable ``fileobj`` to
        where it stood; a non-seekable one gets no retry.

        >>> with open("/tmp/index.html", "wb") as f:
        ...     engine.download_fileobj("site", "index.html", f)   # doctest: +SKIP
        11
        """
        try:
            start: int | None = fileobj.tell() if fileobj.seekable() else None
        except (AttributeError, OSError, ValueError):
            start = None
        first = [True]

        def run() -> int:
            if not first[0] and start is not None:
                fileobj.seek(start)
                fileobj.truncate()
            first[0] = False
            return self._download_once(bucket, key, _StreamOutput(fileobj, rewind_to=start), raw, None)

        return self._attempts(bucket, key, retries, DownloadError, rereadable=start is not None, run=run)

    def _download_once(
        self, bucket: str, key: str, output: _Output, raw: bool, progress: Callable[[int, int | None], None] | None
    ) -> int:
        """One attempt: the stored bytes into ``output``, decoded (unless ``raw``); return the bytes written."""
        req = Requester(self.client, self.settings, bucket, key, DownloadError)

        def start(info: ObjectInfo) -> Target:  # called after HEAD, before the first byte
            encoding = (info.content_encoding or "").strip().lower()
            return output.open(encoding if not raw and encoding in DECODABLE else None)

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)

        try:
            info = download_stream(req, settings=self.settings, on_start=start, progress=report)
            output.finish()
        except ValueError as exc:  # the stored bytes are not valid for their Content-Encoding
            raise DownloadError(
                f"s3://{bucket}/{key}: cannot decode the stored object: {exc}", bucket=bucket, key=key, transient=False
            ) from exc
        return output.count if output.decoder is not None or output.fd is None else info.size

    # -- retries ---------------------------------------------------------------------

    def _attempts(
        self,
        bucket: str,
        key: str,
        retries: int,
        error_cls: type[TransferError],
        *,
        rereadable: bool,
        run: Callable[[], T],
    ) -> T:
        """Return ``run()``, run again after a transient failure up to ``retries`` times; raise the last error."""
        attempt = 0
        while True:
            try:
                return run()
            except JobError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a TransferError
                error = translate_error(exc, bucket, key, error_cls)
                if error is not exc and not isinstance(exc, TransferError):
                    error.__cause__ = exc
                if type(error) is TransferError:  # raised bare inside the engine: give it its side
                    error = error_cls(str(error), bucket=bucket, key=key, transient=error.transient)
                    error.__cause__ = exc
                error.attempt = attempt
                can_retry = error.transient and attempt < retries and rereadable
                if not can_retry:
                    if error is exc:
                        raise
                    raise error from exc
                delay_s = self.retry.delay_s(attempt)
                logger.warning(
                    "transfer retry bucket=%s key=%s attempt=%d in=%.1fs error=%s",
                    bucket,
                    key,
                    attempt + 1,
                    delay_s,
                    error,
                )
                time.sleep(delay_s)
                attempt += 1


#: glibc's mallopt parameter for the size from which malloc maps memory of its own
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 1024 * 1024


def return_large_buffers_to_the_os() -> bool:
    """Make glibc serve buffers of 1 MiB and more with mmap, so freeing one returns it to the OS.

    Parts and ranges are buffers of several MiB, allocated and freed by many threads. By
    default glibc raises its mmap threshold to the size of the last such buffer freed and
    serves the next ones from per-thread heaps, which fragment: a 1 GiB gzip upload and
    download (tests/test_transfer_memory.py) peaked at 205–227 MiB (VmHWM) that way, at
    143–150 MiB with this fixed threshold. The setting is process-wide: it applies to the
    whole program that uses the engine, and only changes where large blocks come from.
    Returns False where there is no glibc (nothing to do).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))


class _CountingReader:
    """Counts the bytes read through it."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size)
        self.count += len(data)
        return data


class _Output:
    """Where a download attempt writes; ``open(encoding)`` gives download.py its ``Target``.

    Bytes kept as stored may go to a file descriptor at their offsets (``fd``); anything
    decoded goes in order through a ``DecodingWriter``. ``count`` is the bytes written in order.
    """

    fd: int | None = None

    def __init__(self) -> None:
        self.count = 0
        self.decoder: DecodingWriter | None = None
        self.restartable = True

    def open(self, encoding: str | None) -> _Output:
        self.decoder = DecodingWriter(_Counted(self), encoding) if encoding else None
        return self

    def write(self, data: bytearray) -> object:
        if self.decoder is not None:
            return self.decoder.write(cast(bytes, data))  # the decoders take any buffer
        return self.put(data)

    def put(self, data: bytes | bytearray) -> int:
        """Write ``data`` after the bytes written so far."""
        raise NotImplementedError

    def restart(self) -> None:
        self.rewind()
        self.count = 0
        if self.decoder is not None:
            self.decoder = DecodingWriter(_Counted(self), self.decoder.encoding)

    def rewind(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Check the encoded stream ended properly (``ValueError`` if not)."""
        if self.decoder is not None:
            self.decoder.close()


class _FileOutput(_Output):
    """A file descriptor: bytes as stored go at their offsets, decoded ones through a buffer, in order."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.file = os.fdopen(fd, "wb", closefd=False)
        self.descriptor = fd

    def open(self, encoding: str | None) -> _Output:
        super().open(encoding)
        self.fd = self.descriptor if self.decoder is None else None
        return self

    def put(self, data: bytes | bytearray) -> int:
        self.file.write(data)
        self.count += len(data)
        return len(data)

    def rewind(self) -> None:
        self.file.flush()
        self.file.seek(0)
        os.ftruncate(self.descriptor, 0)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        """Close the buffer over the descriptor (which stays open): what it holds is written first."""
        try:
            self.file.close()
        except (OSError, ValueError):
            pass  # a failed download's temporary file is removed anyway


class _StreamOutput(_Output):
    """A file object written in order; restartable when it can be rewound to ``rewind_to``."""

    def __init__(self, out: Any, rewind_to: int | None) -> None:
        super().__init__()
        self.out = out
        self.rewind_to = rewind_to
        self.restartable = rewind_to is not None

    def put(self, data: bytes | bytearray) -> int:
        self.out.write(data)
        self.count += len(data)
        return len(data)

    def rewind(self) -> None:
        if self.rewind_to is None:
            raise ValueError("this file object cannot be rewound")
        self.out.seek(self.rewind_to)
        self.out.truncate()


class _Counted:
    """The sink of a decoder: what it decodes goes to the output, in order."""

    def __init__(self, output: _Output) -> None:
        self.output = output

    def write(self, data: bytes) -> int:
        return self.output.put(data)


__all__ = ["FileStat", "SourceChangedError", "TransferEngine", "UploadResult"]
