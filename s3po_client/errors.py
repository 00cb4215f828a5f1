"""The exceptions s3po raises, as one small tree.

::

    S3poError                   root: catch this to catch anything of ours
    ├── JobError                invalid job → dead-lettered at once, never retried
    │   └── UnsafePathError     outside --allow-dir, or through a symlink
    ├── ConfigError             bad option or setting → command exits 2 with one line
    └── TransferError           upload/download failed; carries bucket, key, attempt
        ├── UploadError         an upload failed (what a synchronous upload raises)
        ├── DownloadError       a download failed
        ├── SourceChangedError  file changed or vanished while sending → never delete it
        └── VerificationError   stored object differs from what was sent

The tree tells the daemon what to do: ``JobError`` → dead-letter; ``TransferError`` →
ask the retry policy (``transient`` says whether another attempt can help); anything else
is a bug: log the traceback, count a failed attempt, keep running.
"""

from __future__ import annotations


class S3poError(Exception):
    """Root of every error s3po raises on purpose."""


class JobError(S3poError):
    """Raised when a job is malformed; it is dead-lettered at once, never retried."""


class UnsafePathError(JobError):
    """Raised when a job's path is outside the allowed directories or escapes them."""


class ConfigError(S3poError):
    """Raised for a bad option or setting; commands exit 2 with its one-line message."""


class TransferError(S3poError):
    """Raised when an upload or download fails; says where, which attempt, and whether a retry can help."""

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        attempt: int | None = None,
        transient: bool = True,
        code: str = "",
    ) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key
        self.attempt = attempt
        self.transient = transient
        #: the store's error code (``NoSuchBucket``, ``InvalidArgument``, …), when it sent one
        self.code = code


class UploadError(TransferError):
    """Raised when an upload fails for good (after its retries, or at once when permanent)."""


class DownloadError(TransferError):
    """Raised when a download fails for good."""


class SourceChangedError(TransferError):
    """Raised when the local file changed or vanished while it was sent; it is never deleted."""


class VerificationError(TransferError):
    """Raised when the stored object differs from what was sent (size or checksum)."""
