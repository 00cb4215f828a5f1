"""s3po: hand uploads to S3 off and forget them.

``import s3po_client`` and ``enqueue(...)`` load only redis-py and the standard library;
boto3 is imported when a transfer actually runs.
"""

from __future__ import annotations

from .connection import Connection
from .errors import (
    ConfigError,
    DownloadError,
    JobError,
    S3poError,
    SourceChangedError,
    TransferError,
    UnsafePathError,
    UploadError,
    VerificationError,
)
from .inprocess import UploadFailure
from .job import Job
from .keys import QueueKeys
from .producer import enqueue, enqueue_many

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Connection",
    "DownloadError",
    "Job",
    "JobError",
    "QueueKeys",
    "S3poError",
    "SourceChangedError",
    "TransferError",
    "UnsafePathError",
    "UploadError",
    "UploadFailure",
    "VerificationError",
    "__version__",
    "enqueue",
    "enqueue_many",
]
