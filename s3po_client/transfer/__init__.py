"""The transfer engine: the only part of s3po that imports boto3.

``TransferEngine`` uploads (a file, bytes or a file object; compressed on the way if
asked; multipart in parallel above a threshold; every part verified) and downloads
(ranged GETs in parallel, verified, decoded, atomic for files), each retried as asked.

==============  ==========================================================
``engine``      TransferEngine: the public methods only
``results``     UploadResult, DownloadResult, StoredObject, Bucket
``attempts``    a whole transfer retried as the retry policy says
``send``        one upload attempt: single PUT or multipart, and its source read
``single``      a single PUT, proven by the store's CRC32 or ETag
``direct_put``  the small-object PUT signed by s3po, past boto3's call stack
``sigv4``       that PUT's SigV4 signature, held to botocore's byte for byte
``multipart``   a multipart upload: parts in parallel, each retried alone
``resume``      a multipart upload an earlier run left: resumed or aborted
``state``       the interface through which that upload is remembered
``body``        bodies with their checksums, progress, an attempt's result
``checksums``   which checksum uploads send (CRC32, MD5), learned from the store
``fetch``       one download attempt: ranged GETs, checked, in order or at offsets
``offsets``     GETs written at their offsets by one thread, fetched by many
``verify``      what a download checks its bytes against, and its plan of GETs
``sinks``       where a download writes: a file (atomically) or a file object
``sources``     what an upload reads: FileSource, BytesSource, FileobjSource
``headers``     HTTP header names → object settings, checked before sending
``parts``       part sizing and checksums: pure functions
``client``      the boto3 client, its errors translated, the Requester
``s3calls``     one typed function per S3 call
``memory``      the malloc setting that keeps large buffers from fragmenting
``bandwidth``   --bwlimit: rates, timetables, the token buckets bodies pass through
==============  ==========================================================
"""

from __future__ import annotations

from ..localfile import FileStat
from .client import PERMANENT_CODES, make_client, translate_error
from .engine import TransferEngine
from .headers import HEADER_ARGS, object_args
from .results import Bucket, DownloadResult, StoredObject, UploadResult

__all__ = [
    "Bucket",
    "DownloadResult",
    "HEADER_ARGS",
    "PERMANENT_CODES",
    "StoredObject",
    "FileStat",
    "TransferEngine",
    "UploadResult",
    "make_client",
    "object_args",
    "translate_error",
]
