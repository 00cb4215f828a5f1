"""The transfer engine: the only module that imports boto3.

First version: one PUT per upload. Its public surface (``TransferEngine.upload_file``
and friends, ``UploadResult``) is what the daemon, ``Connection`` and the ``s3po``
command use.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .errors import TransferError, UploadError
from .settings import S3Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

#: S3 error codes that no retry can fix.
PERMANENT_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "NoSuchBucket", "InvalidBucketName", "InvalidArgument", "InvalidRequest",
    "EntityTooLarge", "KeyTooLongError", "MethodNotAllowed", "InvalidStorageClass",
    "AccountProblem", "NoSuchKey", "404", "403", "400",
})

HEADER_ARGS = {
    "content-type": "ContentType",
    "cache-control": "CacheControl",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "content-encoding": "ContentEncoding",
}


@dataclass(frozen=True, slots=True)
class FileStat:
    """What identifies a version of a local file: size, mtime and inode."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: str) -> FileStat:
        st = os.stat(path)
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an upload stored: where, how many bytes were read and sent, and the source's identity."""

    bucket: str
    key: str
    bytes_read: int
    bytes_sent: int
    etag: str
    source: FileStat | None = None


def make_client(settings: S3Settings, max_pool_connections: int = 10) -> S3Client:
    """Return a boto3 S3 client for ``settings``."""
    session = boto3.session.Session(
        profile_name=settings.profile,
        aws_access_key_id=settings.access_id,
        aws_secret_access_key=settings.secret_key,
        region_name=settings.region,
    )
    config = Config(
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        **settings.boto_options,
    )
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config)


def translate_error(exc: BaseException, bucket: str, key: str, cls: type[TransferError] = UploadError) -> TransferError:
    """Return the TransferError for a boto3/OS error, marked transient or permanent."""
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        return cls(f"{where}: {code}: {message}", bucket=bucket, key=key,
                   transient=code not in PERMANENT_CODES)
    if isinstance(exc, FileNotFoundError):
        return cls(f"{where}: local file {exc.filename!r} does not exist", bucket=bucket, key=key,
                   transient=False)
    if isinstance(exc, OSError):
        return cls(f"{where}: local file error: {exc}", bucket=bucket, key=key, transient=False)
    if isinstance(exc, EndpointConnectionError):
        return cls(f"{where}: cannot connect to the S3 endpoint: {exc}", bucket=bucket, key=key)
    if isinstance(exc, BotoCoreError):
        return cls(f"{where}: {exc}", bucket=bucket, key=key)
    return cls(f"{where}: {type(exc).__name__}: {exc}", bucket=bucket, key=key)


class TransferEngine:
    """Uploads and downloads with one boto3 client, built on first use."""

    def __init__(self, s3: S3Settings | None = None) -> None:
        self.s3 = s3 or S3Settings()
        self._client: Any = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = make_client(self.s3)
        return self._client

    def upload_file(
        self,
        bucket: str,
        key: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        compress: str | None = None,
    ) -> UploadResult:
        """Store the file at ``path`` as ``s3://bucket/key`` (one attempt) and return what was stored."""
        started = time.monotonic()
        try:
            before = FileStat.of(path)
            extra = {HEADER_ARGS[k.lower()]: v for k, v in (headers or {}).items() if k.lower() in HEADER_ARGS}
            with open(path, "rb") as body:
                response = self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        except Exception as exc:
            raise translate_error(exc, bucket, key) from exc
        logger.debug("put s3://%s/%s bytes=%d in %.3fs", bucket, key, before.size, time.monotonic() - started)
        return UploadResult(bucket=bucket, key=key, bytes_read=before.size, bytes_sent=before.size,
                            etag=str(response.get("ETag", "")).strip('"'), source=before)
