"""One small typed function per S3 call, with explicit parameters (made through a ``client.Requester``)."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import Any

from ..errors import TransferError
from .bandwidth import LimitedBody, TokenBucket
from .results import Bucket, StoredObject

#: what an upload request carries: the bytes, or the bytes read through a bandwidth limit
Payload = bytes | bytearray | LimitedBody

#: how much of a GET's body is read at a time
READ_CHUNK_BYTES = 1024 * 1024


def put_object(
    client: Any,
    bucket: str,
    key: str,
    body: Payload,
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
    body: Payload,
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


def head_object(
    client: Any, bucket: str, key: str, part_number: int | None = None, *, checksums: bool = False
) -> dict[str, Any]:
    """Return the object's metadata (of one part's byte range with ``part_number``).

    With ``checksums``, the checksums the store keeps for it too (``ChecksumCRC32``, …:
    ``x-amz-checksum-mode: ENABLED``; a store without them ignores the header).
    """
    extra: dict[str, Any] = {"PartNumber": part_number} if part_number is not None else {}
    if checksums:
        extra["ChecksumMode"] = "ENABLED"
    return client.head_object(Bucket=bucket, Key=key, **extra)  # type: ignore[no-any-return]


def get_object_bytes(
    client: Any,
    bucket: str,
    key: str,
    *,
    byte_range: tuple[int, int] | None,
    if_match: str | None,
    limit: TokenBucket | None = None,
) -> bytearray:
    """GET the object (or the inclusive ``byte_range``) and return its stored bytes.

    ``if_match`` (the ETag seen first) makes a store refuse the request if the object was
    replaced meanwhile, so a download never stitches two versions together. The body is
    read straight into one buffer of the announced size: no chunks joined into a copy.
    ``limit`` is the bucket the bytes received pass through (see :func:`_read_into`).
    """
    response = client.get_object(Bucket=bucket, Key=key, **_get_args(byte_range, if_match))
    body = response["Body"]
    expected = response.get("ContentLength")
    try:
        if expected is None:
            return bytearray(body.read())
        data = bytearray(int(expected))
        got = _read_into(body, memoryview(data), limit)
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
    limit: TokenBucket | None = None,
) -> int:
    """GET the object (or the inclusive ``byte_range``), passing its bytes to ``consume``; return their count.

    The body is read piece by piece, each into a buffer ``buffer()`` gives and handed over
    whole with the bytes it holds (``consume(buf, n)``): memory is the buffers the caller
    lends, whatever the body's length. ``if_match`` and ``limit`` as for ``get_object_bytes``; a body
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
            n = _read_into(body, memoryview(piece)[:want], limit)
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


def _read_into(body: Any, view: memoryview, limit: TokenBucket | None) -> int:
    """Fill ``view`` from ``body``; return the bytes read (fewer at the body's end).

    Through a ``limit`` with a rate, the bytes are read a block at a time, each once the
    bucket lets it pass; without one, they are counted once read.
    """
    if limit is None or limit.rate is None:
        got = _fill(body, view)
        if limit is not None:
            limit.count(got)
        return got
    got = 0
    while got < len(view):
        want = min(len(view) - got, limit.block_bytes)
        limit.take(want)
        n = _fill(body, view[got : got + want])
        got += n
        if n < want:
            break
    return got


def _fill(body: Any, view: memoryview) -> int:
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


def list_objects_page(
    client: Any, bucket: str, prefix: str, token: str | None
) -> tuple[list[StoredObject], str | None]:
    """Return one page (up to 1,000) of the objects under ``prefix``, and the token of the next page (None: the last)."""
    extra = {"ContinuationToken": token} if token else {}
    response = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **extra)
    objects = [
        StoredObject(
            key=str(obj["Key"]),
            size=int(obj.get("Size", 0)),
            etag=str(obj.get("ETag", "")).strip('"'),
            last_modified=obj["LastModified"],
            storage_class=obj.get("StorageClass"),
        )
        for obj in response.get("Contents", [])
    ]
    following = response.get("NextContinuationToken") if response.get("IsTruncated") else None
    return objects, (str(following) if following else None)


def list_buckets(client: Any) -> list[Bucket]:
    """Return the buckets the credentials can list."""
    return [Bucket(name=str(b["Name"]), created=b["CreationDate"]) for b in client.list_buckets().get("Buckets", [])]
