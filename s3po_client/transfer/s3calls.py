"""boto3, behind one small typed function per S3 call, and its errors translated into ours.

Each call is made through a ``Requester``: it retries that one request alone on a
transient failure (``TransferSettings.request_retries``, short backoff), and raises a
``TransferError`` naming bucket, key and cause, so no caller sees ``botocore`` exceptions.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, ParamValidationError

from ..errors import TransferError, UploadError
from ..retry import RetryPolicy
from ..settings import S3Settings, TransferSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: S3 error codes that no retry can fix (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
#: Everything else, notably 5xx, SlowDown, RequestTimeout, BadDigest and
#: XAmzContentSHA256Mismatch (bytes damaged on the way), is worth another try.
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
READ_CHUNK_BYTES = 1024 * 1024

#: ceiling of the wait between two tries of one request
REQUEST_BACKOFF_MAX_S = 10.0


def make_client(s3: S3Settings, settings: TransferSettings | None = None) -> S3Client:
    """Return a boto3 S3 client for ``s3``, configured as ``settings`` says.

    botocore's own retries are off (s3po retries each request itself, with its own
    classification), and so are the flexible checksums botocore adds by default since
    1.36 (``when_required``): many S3-compatible stores reject them, and s3po chooses and
    computes each upload's checksum itself (see ``TransferSettings.checksum``, ``proof.Proof``).

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
            "addressing_style": "path" if s3.endpoint_url else "auto",
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
    return session.client("s3", endpoint_url=s3.endpoint_url, config=Config(**options))


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
    # botocore's network errors (read timeouts, connections closed) derive from OSError through
    # the requests exceptions it vendors: they are the store's trouble, not the local file's.
    if isinstance(exc, ParamValidationError):  # botocore refused the request as built: so will every retry
        return cls(f"{where}: {exc}", bucket=bucket, key=key, transient=False)
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
    #: the lean PUT path for small bodies (``lean.LeanPutter``), when the engine has one
    lean: Any = None
    #: which checksums uploads send (``proof.Proof``), shared by the engine's transfers
    proof: Any = None

    def call(self, what: str, request: Callable[[], T]) -> T:
        """Return ``request()``; retry it on transient failures; raise a TransferError when it fails for good."""
        backoff: RetryPolicy | None = None  # built on the first failure: its Random seeds from os.urandom
        tries = 0
        while True:
            try:
                return request()
            except Exception as exc:  # noqa: BLE001 - translated below, nothing escapes untyped
                if isinstance(exc, TransferError):
                    error = exc
                else:
                    error = translate_error(exc, self.bucket, self.key, self.error_cls)
                    error.__cause__ = exc
                if not error.transient or tries >= self.settings.request_retries or self.cancelled.is_set():
                    raise error from exc
                if backoff is None:
                    backoff = RetryPolicy(base_s=self.settings.request_backoff_base_s, max_s=REQUEST_BACKOFF_MAX_S)
                delay_s = backoff.delay_s(tries)
                tries += 1
                logger.debug(
                    "request retry what=%s bucket=%s key=%s try=%d in=%.2fs error=%s",
                    what,
                    self.bucket,
                    self.key,
                    tries,
                    delay_s,
                    error,
                )
                if self.cancelled.wait(delay_s):
                    raise error from exc


# -- one function per S3 call -----------------------------------------------------------


def put_object(
    client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_md5: str | None,
    checksum_crc32: str | None,
    object_args: dict[str, Any],
) -> dict[str, Any]:
    """PUT ``body`` as the whole object; return the response (ETag, checksums)."""
    return client.put_object(  # type: ignore[no-any-return]
        Bucket=bucket,
        Key=key,
        Body=body,
        **checksum_args(content_md5, checksum_crc32),
        **object_args,
    )


def create_multipart_upload(
    client: Any, bucket: str, key: str, *, checksum_crc32: bool, object_args: dict[str, Any]
) -> str:
    """Start a multipart upload; return its upload id."""
    extra = {"ChecksumAlgorithm": "CRC32"} if checksum_crc32 else {}
    response = client.create_multipart_upload(Bucket=bucket, Key=key, **extra, **object_args)
    return str(response["UploadId"])


def upload_part(
    client: Any,
    bucket: str,
    key: str,
    upload_id: str,
    number: int,
    body: bytes,
    *,
    content_md5: str | None,
    checksum_crc32: str | None,
) -> dict[str, Any]:
    """Send part ``number``; return the response (ETag, checksums)."""
    extra = checksum_args(content_md5, checksum_crc32)
    return client.upload_part(  # type: ignore[no-any-return]
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=number,
        Body=body,
        **extra,
    )


def checksum_args(content_md5: str | None, checksum_crc32: str | None) -> dict[str, str]:
    """Return the boto3 arguments that carry a body's checksums (at least one is given)."""
    extra = {"ChecksumCRC32": checksum_crc32} if checksum_crc32 else {}
    if content_md5:
        extra["ContentMD5"] = content_md5
    return extra


def complete_multipart_upload(
    client: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Assemble the parts into the object; return the response (ETag)."""
    return client.complete_multipart_upload(  # type: ignore[no-any-return]
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def abort_multipart_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload, so the store drops (and stops billing) its parts."""
    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def list_parts(client: Any, bucket: str, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
    """Return the parts a multipart upload holds: part number → (size, ETag without quotes).

    Raises the store's ``NoSuchUpload`` when the upload was completed or aborted. Pages of
    1,000 parts are followed to the end (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListParts.html).
    """
    parts: dict[int, tuple[int, str]] = {}
    marker = 0
    while True:
        response = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker)
        for part in response.get("Parts", []):
            parts[int(part["PartNumber"])] = (int(part["Size"]), str(part.get("ETag", "")).strip('"').lower())
        following = int(response.get("NextPartNumberMarker") or 0)
        if not response.get("IsTruncated") or following <= marker:
            return parts
        marker = following


def list_multipart_uploads(client: Any, bucket: str, prefix: str) -> list[tuple[str, str]]:
    """Return the multipart uploads under way whose key starts with ``prefix``: (key, upload id).

    Pages are followed to the end.
    """
    found: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    while True:
        response = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix, **markers)
        for upload in response.get("Uploads", []):
            found.append((str(upload["Key"]), str(upload["UploadId"])))
        if not response.get("IsTruncated"):
            return found
        following = {
            "KeyMarker": response.get("NextKeyMarker") or "",
            "UploadIdMarker": response.get("NextUploadIdMarker") or "",
        }
        if following == markers:
            return found
        markers = following


def head_object(client: Any, bucket: str, key: str, part_number: int | None = None) -> dict[str, Any]:
    """Return the object's metadata (of one part's byte range with ``part_number``)."""
    extra = {"PartNumber": part_number} if part_number is not None else {}
    return client.head_object(Bucket=bucket, Key=key, **extra)  # type: ignore[no-any-return]


def get_object_bytes(
    client: Any, bucket: str, key: str, *, byte_range: tuple[int, int] | None, if_match: str | None
) -> bytearray:
    """GET the object (or the inclusive ``byte_range``) and return its stored bytes.

    ``if_match`` (the ETag seen first) makes a store refuse the request if the object was
    replaced meanwhile, so a download never stitches two versions together. The body is
    read straight into one buffer of the announced size: no chunks joined into a copy.
    """
    response = client.get_object(Bucket=bucket, Key=key, **_get_args(byte_range, if_match))
    body = response["Body"]
    expected = response.get("ContentLength")
    try:
        if expected is None:
            return bytearray(body.read())
        data = bytearray(int(expected))
        got = _read_into(body, memoryview(data))
    finally:
        body.close()
    if got != expected:
        raise TransferError(f"s3://{bucket}/{key}: short read: {got} of {expected} bytes", bucket=bucket, key=key)
    return data


def get_object_into(
    client: Any,
    bucket: str,
    key: str,
    *,
    byte_range: tuple[int, int] | None,
    if_match: str | None,
    buffer: Callable[[], bytearray],
    consume: Callable[[bytearray, int], None],
) -> int:
    """GET the object (or the inclusive ``byte_range``), passing its bytes to ``consume``; return their count.

    The body is read piece by piece, each into a buffer ``buffer()`` gives and handed over
    whole with the bytes it holds (``consume(buf, n)``): memory is the buffers the caller
    lends, whatever the body's length. ``if_match`` as for ``get_object_bytes``; a body
    shorter than announced raises.
    """
    response = client.get_object(Bucket=bucket, Key=key, **_get_args(byte_range, if_match))
    body = response["Body"]
    expected = response.get("ContentLength")
    got = 0
    try:
        while expected is None or got < expected:
            piece = buffer()
            want = len(piece) if expected is None else min(len(piece), int(expected) - got)
            n = _read_into(body, memoryview(piece)[:want])
            consume(piece, n)
            got += n
            if n < want:
                break
    finally:
        body.close()
    if expected is not None and got != expected:
        raise TransferError(f"s3://{bucket}/{key}: short read: {got} of {expected} bytes", bucket=bucket, key=key)
    return got


def _get_args(byte_range: tuple[int, int] | None, if_match: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if byte_range is not None:
        extra["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    if if_match:
        extra["IfMatch"] = if_match
    return extra


def _read_into(body: Any, view: memoryview) -> int:
    """Fill ``view`` from ``body``; return the bytes read (fewer at the body's end).

    The bytes are received straight into ``view`` from the HTTP response under botocore's
    body when it can be read so (see ``_plain_response``); otherwise through
    ``body.readinto``, ``READ_CHUNK_BYTES`` at most a read, which costs a copy and two
    buffers a read more (measured: a tenth of a 1 GiB download's client CPU).
    """
    got = 0
    response = _plain_response(body)
    if response is not None:
        try:
            while got < len(view):
                n = response.readinto(view[got:])
                if not n:
                    break
                got += n
        except (OSError, http.client.HTTPException) as exc:  # the connection's trouble, not a local file's
            raise TransferError(f"reading the response failed: {type(exc).__name__}: {exc}") from exc
        if response.isclosed():  # read to its end: the connection goes back to the pool
            body._raw_stream.release_conn()
        return got
    while got < len(view):
        n = body.readinto(view[got : got + READ_CHUNK_BYTES])
        if not n:
            break
        got += n
    return got


def _plain_response(body: Any) -> http.client.HTTPResponse | None:
    """The ``http.client`` response under a botocore body, when its bytes are the body's as they are.

    botocore's ``StreamingBody`` wraps a urllib3 response, asked for without content
    decoding, over the standard library's response; with a known length and no chunked
    framing, reading that one gives the same bytes with no copy between. Anything else
    (another HTTP stack, another urllib3) is read through ``body.readinto``.
    """
    stream = getattr(body, "_raw_stream", None)
    response = getattr(stream, "_fp", None)
    if (
        isinstance(response, http.client.HTTPResponse)
        and response.length is not None
        and not response.chunked
        and getattr(stream, "decode_content", True) is False
        and callable(getattr(stream, "release_conn", None))
    ):
        return response
    return None
