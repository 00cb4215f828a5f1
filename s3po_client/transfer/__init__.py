"""The transfer engine: the only part of s3po that imports boto3.

``TransferEngine`` uploads (a file, bytes or a file object; compressed on the way if
asked; multipart in parallel above a threshold; every part verified) and downloads
(ranged GETs in parallel, verified, decoded, atomic for files), each retried as asked.

=============  ==========================================================
``engine``     TransferEngine, UploadResult: the public face, and retries
``upload``     one upload attempt: single PUT or parallel multipart
``download``   one download attempt: parallel ranged GETs in order, verified
``sources``    what an upload reads: FileSource, BytesSource, FileobjSource
``headers``    HTTP header names → object settings, checked before sending
``parts``      part sizing and checksums: pure functions
``client``     boto3: the client, one function per S3 call, error translation
=============  ==========================================================
"""

from __future__ import annotations

from ..localfile import FileStat
from .client import PERMANENT_CODES, make_client, translate_error
from .engine import TransferEngine, UploadResult
from .headers import HEADER_ARGS, object_args

__all__ = [
    "HEADER_ARGS",
    "PERMANENT_CODES",
    "FileStat",
    "TransferEngine",
    "UploadResult",
    "make_client",
    "object_args",
    "translate_error",
]
