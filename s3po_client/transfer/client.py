"""boto3's S3 client, its errors translated into ours, and the ``Requester`` that retries one request.

Each S3 call (:mod:`.s3calls`) is made through a ``Requester``: it retries that one
request alone on a transient failure (``TransferSettings.request_retries``, short
backoff), and raises a ``TransferError`` naming bucket, key and cause, so no caller sees
``botocore`` exceptions.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    ParamValidationError,
)

from ..errors import TransferError, UploadError
from ..retry import RetryPolicy
from ..settings import S3Settings, TransferSettings
from .bandwidth import Limiter, charge_after_signing

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidArgument",
        "InvalidRequest",
        "EntityTooLarge",
        "KeyTooLongError",
        "MethodNotAllowed",
        "InvalidStorageClass",
        "AccountProblem",
        "NoSuchKey",
        "MetadataTooLarge",
        "InvalidObjectState",
        "InvalidEncryptionAlgorithmError",
        "KMS.NotFoundException",
        "NotImplemented",
        "InvalidTag",
        "UnsupportedHeader",
        "PermanentRedirect",
        "301",
        "404",
        "403",
        "400",
        "405",
        "501",
    }
)

#: how much of a GET's body is read at a time
#: ceiling of the wait between two tries of one request
REQUEST_BACKOFF_MAX_S = 10.0


@functools.lru_cache(maxsize=8)
def request_policy(base_s: float) -> RetryPolicy:
    """Return the retry policy of one S3 request (``base_s`` doubling to :data:`REQUEST_BACKOFF_MAX_S`), built once."""
    return RetryPolicy(base_s=base_s, max_s=REQUEST_BACKOFF_MAX_S)


def make_client(s3: S3Settings, settings: TransferSettings | None = None) -> S3Client:
    """Return a boto3 S3 client for ``s3``, configured as ``settings`` says.

    botocore's own retries are off (s3po retries each request itself, with its own
    classification), and so are the flexible checksums botocore adds by default since
    1.36 (``when_required``): many S3-compatible stores reject them, and s3po chooses and
    computes each upload's checksum itself (see ``TransferSettings.checksum``, ``checksums.ChecksumChoice``).

    Payload signing is off unless ``settings.sign_payload``: over plain HTTP botocore
    otherwise hashes every byte with SHA-256 for the signature, on top of the checksum s3po
    computes anyway (measured: a third of the client's CPU for a 256 MiB upload). The
    checksum header (CRC32 or Content-MD5) is itself signed, so the store still refuses
    altered bytes.
    """
    settings = settings or TransferSettings()
    session = boto3.session.Session(
        profile_name=s3.profile,
        aws_access_key_id=s3.access_id,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
    )
    options: dict[str, Any] = {
        "s3": {
            "addressing_style": s3.addressing_style or ("path" if s3.endpoint_url else "auto"),
            "payload_signing_enabled": settings.sign_payload,
        },
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "max_pool_connections": settings.max_pool_connections,
        "connect_timeout": settings.connect_timeout_s,
        "read_timeout": settings.read_timeout_s,
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    options.update(s3.boto_options)
    client = session.client("s3", endpoint_url=s3.endpoint_url, verify=s3.ca_bundle, config=Config(**options))
    charge_after_signing(client)  # a limited body is charged for the bytes sent, not those hashed to sign it
    return client


def error_code(exc: BaseException) -> str:
    """Return the S3 error code of a botocore ClientError or of a TransferError (``""`` if none)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    if isinstance(exc, TransferError):
        return exc.code or (error_code(exc.__cause__) if exc.__cause__ is not None else "")
    return ""


def translate_error(exc: BaseException, bucket: str, key: str, cls: type[TransferError] = UploadError) -> TransferError:
    """Return the TransferError for a boto3/OS error, marked transient or permanent."""
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, TransferError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code == "404":  # a HEAD's answer has no body to name the error
            message = "no such object (or bucket)"
        return cls(
            f"{where}: {code}: {message}", bucket=bucket, key=key, transient=code not in PERMANENT_CODES, code=code
        )
    if _refused_as_built(exc):  # botocore or http.client refused the request as built: so will every retry
        return cls(f"{where}: the request cannot be sent: {exc}", bucket=bucket, key=key, transient=False)
    # botocore's network errors (read timeouts, connections closed) derive from OSError through
    # the requests exceptions it vendors: they are the store's trouble, not the local file's.
    if isinstance(exc, EndpointConnectionError):
        return cls(f"{where}: cannot connect to the S3 endpoint: {exc}", bucket=bucket, key=key)
    if isinstance(exc, BotoCoreError):
        return cls(f"{where}: {exc}", bucket=bucket, key=key)
    if isinstance(exc, FileNotFoundError):
        return cls(f"{where}: local file {exc.filename!r} does not exist", bucket=bucket, key=key, transient=False)
    if isinstance(exc, OSError):
        return cls(f"{where}: local file error: {exc}", bucket=bucket, key=key, transient=False)
    if isinstance(exc, (TypeError, AttributeError, NameError)):
        # A programming error (a library that does not take an argument, say): no retry helps.
        return cls(f"{where}: {type(exc).__name__}: {exc}", bucket=bucket, key=key, transient=False)
    # urllib3 errors that escape botocore while a body is read (reset, timeout): transient
    return cls(f"{where}: {type(exc).__name__}: {exc}", bucket=bucket, key=key)


def _refused_as_built(exc: BaseException) -> bool:
    """Whether the request was refused before it left: invalid parameters, or a header HTTP cannot carry."""
    if isinstance(exc, HTTPClientError):  # what botocore's HTTP session makes of http.client's refusal
        exc = exc.kwargs.get("error", exc)
    if isinstance(exc, ParamValidationError | UnicodeEncodeError):
        return True
    return isinstance(exc, ValueError) and str(exc).startswith("Invalid header")


@dataclass
class Requester:
    """Makes S3 requests for one transfer, retrying each alone on a transient failure.

    ``cancelled`` is set when the transfer has failed elsewhere (another part), so a
    request still waiting to retry gives up at once.
    """

    client: Any
    settings: TransferSettings
    bucket: str
    key: str
    error_cls: type[TransferError]
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: the direct PUT for small bodies (``direct_put.DirectPut``), when the engine has one
    direct_put: Any = None
    #: which checksums uploads send (``checksums.ChecksumChoice``), shared by the engine's transfers
    checksums: Any = None
    #: the process's bandwidth limits, which request bodies pass through
    limiter: Limiter = field(default_factory=Limiter)

    def call(self, what: str, request: Callable[[], T]) -> T:
        """Return ``request()``; retry it on transient failures; raise a TransferError when it fails for good."""

        def classify(exc: Exception, _tries: int) -> Exception:
            if isinstance(exc, TransferError):
                return exc
            error = translate_error(exc, self.bucket, self.key, self.error_cls)
            error.__cause__ = exc
            return error

        def on_retry(tries: int, delay_s: float, error: Exception) -> None:
            logger.debug(
                "request retry what=%s bucket=%s key=%s try=%d in=%.2fs error=%s",
                what,
                self.bucket,
                self.key,
                tries,
                delay_s,
                error,
            )

        policy = request_policy(self.settings.request_backoff_base_s)
        retries = self.settings.request_retries
        return policy.call(request, retries=retries, stop=self.cancelled, classify=classify, on_retry=on_retry)
