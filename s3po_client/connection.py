"""The ``Connection`` object: the original S3-PO interface, on s3po's queue and transfer engine.

One object, three ways to upload:

- **queued** (the default for an asynchronous upload): the call returns the job id once
  the job is safely in Redis; the ``s3pod`` daemon uploads it.
- **synchronous** (``async_=False``): the upload runs in the caller's thread and returns
  True, raises :class:`~s3po_client.errors.UploadError`, or returns False when ``silent``.
- **in-process threads** (after :meth:`Connection.run_loop`): asynchronous uploads go to
  background threads in this process instead of Redis. No Redis needed, and no persistence: see
  :mod:`s3po_client.inprocess`.

Downloads are always synchronous. Constructing a ``Connection`` and queueing uploads never
import boto3; the transfer engine is built on the first transfer that runs in this process.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, TransferError, UploadError
from .inprocess import DEFAULT_THREADS, UploadFailure, UploadThreads
from .job import DEFAULT_RETRIES, Codec, Job
from .keys import DEFAULT_PREFIX, QueueKeys
from .producer import make_job, push_jobs
from .redis_url import connect
from .retry import DEFAULT_BACKOFF_BASE_S, RetryPolicy
from .settings import S3Settings
from .settle import delete_uploaded

if TYPE_CHECKING:
    import redis

    from .transfer import TransferEngine
    from .transfer.bandwidth import Limiter

logger = logging.getLogger(__name__)

#: The original spelled the flag ``async``, a keyword since Python 3.7; it is still
#: accepted as ``**{"async": ...}``.
LEGACY_ASYNC = "async"


class Connection:
    """Upload to and download from S3; uploads synchronous, queued for ``s3pod``, or on in-process threads.

    Without ``access_id``/``secret_key`` boto3's standard credential chain applies
    (environment, ``~/.aws``, instance role), as the original promised for ``~/.boto``.
    ``delete`` and ``async_`` are connection-wide defaults that each upload call may
    override either way. ``backoff_base`` is the seconds before the first retry of a
    transfer run in this process (doubling each time: 1, 2, 4 minutes by default).
    ``tempdir`` holds the temporary files of asynchronous string uploads and of downloads
    without a file name; with ``s3pod``, it must be a directory the daemon may read and
    delete in (``--allow-dir``). ``bwlimit`` limits this connection's transfers in this process, all
    together (what ``s3po --bwlimit`` takes: ``"10M"``, ``"10M:off"``, a timetable; s3pod limits queued
    uploads itself). Other keyword arguments go to ``botocore.config.Config``.

    >>> conn = Connection(delete=False, async_=False)  # doctest: +SKIP
    >>> conn.uploadFile("my-bucket", "my-key", "foo.txt")  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        access_id: str | None = None,
        secret_key: str | None = None,
        *,
        delete: bool = True,
        async_: bool = True,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        backoff_base: float = DEFAULT_BACKOFF_BASE_S,
        tempdir: str | os.PathLike[str] | None = None,
        bwlimit: str | None = None,
        **boto_options: Any,
    ) -> None:
        if LEGACY_ASYNC in boto_options:
            async_ = bool(boto_options.pop(LEGACY_ASYNC))
        self.s3 = S3Settings(
            access_id=access_id,
            secret_key=secret_key,
            profile=profile,
            region=region,
            endpoint_url=endpoint_url,
            boto_options=boto_options,
        )
        self.retry = RetryPolicy(base_s=backoff_base)
        self._limiter: Limiter | None = None
        if bwlimit is not None:  # checked now; only a connection given a limit loads the engine's modules here
            from .transfer.bandwidth import Limiter, parse_bwlimit

            self._limiter = Limiter(parse_bwlimit(bwlimit))
        self.keys = QueueKeys(prefix)
        self.delete = bool(delete)
        self.async_ = bool(async_)
        self.redis_url = redis_url
        self.tempdir = os.fspath(tempdir) if tempdir is not None else None
        if self.tempdir is not None and not os.path.isdir(self.tempdir):
            raise ConfigError(f"tempdir {self.tempdir!r} is not a directory")
        self._lock = threading.Lock()
        self._engine: TransferEngine | None = None
        self._redis: redis.Redis | None = None
        self._threads: UploadThreads | None = None
        #: set by close(): a synchronous upload waiting for its next attempt gives up at once
        self._closing = threading.Event()

    def __repr__(self) -> str:
        mode = "in-process" if self._threads is not None else "queued"
        return (
            f"Connection(endpoint_url={self.s3.endpoint_url!r}, delete={self.delete}, "
            f"async_={self.async_}, async_mode={mode!r})"
        )

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- uploads -------------------------------------------------------------------------

    def upload_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        headers: Mapping[str, str] | None = None,
        compress: Codec | None = None,
        retries: int = DEFAULT_RETRIES,
        async_: bool | None = None,
        delete: bool | None = None,
        silent: bool = False,
        **legacy: Any,
    ) -> bool | str:
        """Upload the file at ``path`` to ``s3://bucket/key``; delete it afterwards if ``delete``.

        Asynchronous: returns the job id once the upload is queued (in Redis for ``s3pod``,
        or with the threads of :meth:`run_loop`); a path that is not an existing file raises
        :class:`~s3po_client.errors.JobError` at once. Synchronous: returns True once stored
        (and deleted), returns False on failure when ``silent``, else raises
        :class:`~s3po_client.errors.UploadError`. ``retries`` counts the retries after
        the first attempt. The local file is deleted only if it did not change while it was sent.
        """
        run_async = self._resolve_async(async_, legacy)
        do_delete = self.delete if delete is None else bool(delete)
        if run_async:
            return self._submit(
                make_job(
                    bucket,
                    key,
                    path,
                    headers=headers,
                    compress=compress,
                    retries=retries,
                    delete=do_delete,
                    silent=silent,
                )
            )
        return self._store(
            bucket,
            key,
            os.path.abspath(os.fspath(path)),
            headers=headers,
            compress=compress,
            retries=retries,
            delete=do_delete,
            silent=silent,
        )

    def upload_string(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        headers: Mapping[str, str] | None = None,
        compress: Codec | None = None,
        retries: int = DEFAULT_RETRIES,
        async_: bool | None = None,
        silent: bool = False,
        **legacy: Any,
    ) -> bool | str:
        """Upload ``data`` (a ``str`` is sent as UTF-8) to ``s3://bucket/key``.

        Synchronous: returns True, or False when ``silent``, or raises UploadError, as
        :meth:`upload_file`. Asynchronous: ``data`` is written to a temporary file in
        ``tempdir``, which is uploaded with ``delete=True``; returns the job id.
        """
        body = data.encode() if isinstance(data, str) else bytes(data)
        if not self._resolve_async(async_, legacy):

            def attempt() -> bool:
                self.engine.upload_bytes(bucket, key, body, headers=headers, compress=compress, retries=0)
                return True

            return self._retrying(attempt, bucket=bucket, key=key, retries=retries, silent=silent)
        fd, path = tempfile.mkstemp(prefix="s3po-", suffix=".upload", dir=self.tempdir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            return self.upload_file(
                bucket,
                key,
                path,
                headers=headers,
                compress=compress,
                retries=retries,
                async_=True,
                delete=True,
                silent=silent,
            )
        except BaseException:
            os.unlink(path)
            raise

    # -- downloads -----------------------------------------------------------------------

    def download_file(
        self, bucket: str, key: str, filename: str | os.PathLike[str] | None = None, retries: int = DEFAULT_RETRIES
    ) -> str:
        """Download ``s3://bucket/key`` into ``filename`` (a new temporary file if None); return the path.

        The content is decoded per its Content-Encoding. Raises
        :class:`~s3po_client.errors.DownloadError` after ``retries`` failed retries;
        a temporary file is removed when the download fails.
        """
        if filename is not None:
            return self.engine.download_file(bucket, key, os.fspath(filename), retries=retries)
        fd, path = tempfile.mkstemp(prefix="s3po-", suffix=".download", dir=self.tempdir)
        os.close(fd)
        try:
            return self.engine.download_file(bucket, key, path, retries=retries)
        except BaseException:
            os.unlink(path)
            raise

    def download_string(self, bucket: str, key: str, retries: int = DEFAULT_RETRIES) -> bytes:
        """Return the content of ``s3://bucket/key``, decoded per its Content-Encoding."""
        return self.engine.download_bytes(bucket, key, retries=retries)

    # -- the in-process threads ----------------------------------------------------------

    def run_loop(self, threads: int = DEFAULT_THREADS) -> None:
        """Send this connection's asynchronous uploads to ``threads`` background threads from now on.

        The threads live in this process: no Redis is needed, and nothing is persisted, so
        uploads still pending when the process is killed are lost (use ``s3pod`` for that).
        :meth:`wait` blocks until they are done, :meth:`close` waits and stops the threads,
        and a normal interpreter exit finishes them first. Failures are logged and listed
        by :meth:`failures`. Calling it again while the threads run only logs a warning.
        """
        with self._lock:
            if self._threads is not None:
                logger.warning("run_loop called again on a connection whose threads already run")
                return
            self._threads = UploadThreads(self._upload_job, threads=threads, retry=self.retry).start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every in-process upload requested so far is done; False if ``timeout_s`` ran out.

        Uploads queued for ``s3pod`` are the daemon's business: this does not wait for them.
        """
        return self._threads.wait(timeout_s) if self._threads is not None else True

    def failures(self) -> list[UploadFailure]:
        """Return the in-process uploads that failed for good (``silent`` ones too), oldest first."""
        return self._threads.failures() if self._threads is not None else []

    def close(self) -> None:
        """Finish the in-process uploads and stop the threads; release the S3 and Redis connections."""
        self._closing.set()
        if self._threads is not None:
            self._threads.close()
        with self._lock:
            engine, self._engine = self._engine, None
            client, self._redis = self._redis, None
        if engine is not None:
            engine.close()
        if client is not None:
            client.close()

    # -- the original's names ------------------------------------------------------------

    uploadFile = upload_file
    uploadString = upload_string
    downloadFile = download_file
    downloadString = download_string
    runLoop = run_loop

    # -- internals -----------------------------------------------------------------------

    @property
    def engine(self) -> TransferEngine:
        """The transfer engine, built (and boto3 imported) on first use."""
        with self._lock:
            if self._engine is None:
                from .transfer import TransferEngine

                self._engine = TransferEngine(self.s3, retry=self.retry, limiter=self._limiter)
            return self._engine

    def _resolve_async(self, async_: bool | None, legacy: Mapping[str, Any]) -> bool:
        unknown = sorted(set(legacy) - {LEGACY_ASYNC})
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        if LEGACY_ASYNC in legacy:
            if async_ is not None and bool(async_) != bool(legacy[LEGACY_ASYNC]):
                raise TypeError("'async' and 'async_' disagree; give one of them")
            async_ = bool(legacy[LEGACY_ASYNC])
        return self.async_ if async_ is None else bool(async_)

    def _submit(self, job: Job) -> str:
        if self._threads is not None:
            self._threads.submit(job)
            logger.debug("queued job=%s bucket=%s key=%s in-process", job.id, job.bucket, job.key)
            return job.id
        with self._lock:
            if self._redis is None:
                self._redis = connect(self.redis_url)
            client = self._redis
        return push_jobs([job], redis_url=self.redis_url, prefix=self.keys.prefix, client=client)[0]

    def _upload_job(self, job: Job) -> None:
        """What a background thread does with a job: one attempt, raising on failure.

        The threads schedule the next attempt themselves (no thread sleeps through a backoff).
        """
        self._store(
            job.bucket,
            job.key,
            job.path,
            headers=job.headers,
            compress=job.compress,
            retries=0,
            delete=job.delete,
            silent=False,
            job_id=job.id,
        )

    def _store(
        self,
        bucket: str,
        key: str,
        path: str,
        *,
        headers: Mapping[str, str] | None,
        compress: Codec | None,
        retries: int,
        delete: bool,
        silent: bool,
        job_id: str = "-",
    ) -> bool:
        """Upload ``path`` now, then delete it if asked and unchanged; True, or False when silent.

        A file that changed while it was sent is uploaded again like any transient failure
        (``retries`` in all, after the backoff) and is never deleted in the state it was read.
        """

        def attempt() -> bool:
            result = self.engine.upload_file(bucket, key, path, headers=headers, compress=compress, retries=0)
            assert result is not False  # only a silent upload returns False
            logger.info("uploaded job=%s bucket=%s key=%s bytes=%d", job_id, bucket, key, result.bytes_read)
            if delete:
                delete_uploaded(result, job_id=job_id, given_path=path)
            return True

        return self._retrying(attempt, bucket=bucket, key=key, retries=retries, silent=silent, job_id=job_id)

    def _retrying(
        self, attempt: Callable[[], bool], *, bucket: str, key: str, retries: int, silent: bool, job_id: str = "-"
    ) -> bool:
        """Return ``attempt()`` run through the one retry loop; False when it failed and ``silent``, else raise UploadError."""

        def told(next_attempt: int, delay_s: float, error: Exception) -> None:
            logger.warning("retry job=%s attempt=%d in=%.1fs error=%s", job_id, next_attempt, delay_s, error)

        try:
            return self.retry.call(attempt, retries=retries, stop=self._closing, on_retry=told)
        except TransferError as exc:
            if silent:
                logger.info("failed job=%s bucket=%s key=%s error=%s", job_id, bucket, key, exc)
                return False
            if isinstance(exc, UploadError):
                raise
            raise as_upload_error(exc) from exc


def as_upload_error(exc: TransferError) -> UploadError:
    """Return an UploadError (what a synchronous upload raises) saying what ``exc`` says; raise it ``from exc``."""
    return UploadError(str(exc), bucket=exc.bucket, key=exc.key, attempt=exc.attempt, transient=exc.transient)


__all__ = ["Connection", "UploadFailure"]
