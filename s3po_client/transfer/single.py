"""A single PUT: the whole object in one request, proven by the CRC32 or the ETag the store returns."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import TransferError, VerificationError
from . import s3calls as s3
from .body import Body, ProgressReporter, Sent
from .checksums import REFUSAL_CODES, ChecksumChoice
from .client import Requester, error_code
from .parts import b64, clean_etag


def put_single(
    req: Requester,
    data: bytes,
    source_done: int,
    *,
    object_args: dict[str, Any],
    verify_etag: bool,
    progress: ProgressReporter,
) -> Sent:
    """PUT ``data`` as the whole object; verify the ETag or CRC32 the store returns."""
    direct = req.direct_put if req.direct_put is not None and req.direct_put.accepts(object_args) else None
    choice: ChecksumChoice = req.checksums

    def attempt() -> str:
        # Built at each try: a try after the store ignored the CRC32 header carries Content-MD5.
        body = Body.of(data, md5=choice.sends_md5(), crc32=choice.sends_crc32(), source_done=source_done)
        md5_header = b64(body.md5) if body.md5 is not None else None
        with refusal_learned(req, body):
            if direct is not None:
                response = direct.put(
                    req.bucket,
                    req.key,
                    body.data,
                    content_md5=md5_header,
                    checksum_crc32=body.crc32,
                    object_args=object_args,
                    limit=req.limiter.up,
                )
            else:
                response = s3.put_object(
                    req.client,
                    req.bucket,
                    req.key,
                    req.limiter.up.body(data),
                    content_md5=md5_header,
                    checksum_crc32=body.crc32,
                    object_args=object_args,
                )
        etag = clean_etag(response.get("ETag"))
        check_acknowledged(req, "object", etag, body, response, verify_etag)
        return etag

    etag = req.call("put", attempt)  # a PUT whose bytes the store got wrong is sent again
    progress.advance_to(source_done)
    return Sent(etag=etag, bytes_sent=len(data), parts=0)


@contextmanager
def refusal_learned(req: Requester, body: Body) -> Iterator[None]:
    """Turn a store's refusal of the CRC32 header (mode "auto", still learning) into MD5 and a retry."""
    try:
        yield
    except Exception as exc:
        choice: ChecksumChoice = req.checksums
        if body.md5 is None and choice.learning and error_code(exc) in REFUSAL_CODES:
            choice.store_ignores_crc32(str(req.client.meta.endpoint_url))
            raise TransferError(
                f"s3://{req.bucket}/{req.key}: the store refused x-amz-checksum-crc32 "
                f"({error_code(exc)}): sent again with Content-MD5",
                bucket=req.bucket,
                key=req.key,
            ) from exc
        raise


def check_acknowledged(
    req: Requester, what: str, etag: str, body: Body, response: dict[str, Any], verify_etag: bool
) -> None:
    """Raise VerificationError unless the store's answer proves it stored exactly ``body``.

    The proof is the CRC32 the store returns (when the body carried one) or the ETag equal
    to the bytes' MD5 (when the store's ETags are MD5s); a body sent with Content-MD5 alone,
    where the ETag is no MD5 (SSE-KMS), was proven by the store checking that header.
    A VerificationError is transient: the request is sent again (with Content-MD5 once the
    store is known to ignore CRC32).
    """
    where = f"s3://{req.bucket}/{req.key}"
    stored_crc = response.get("ChecksumCRC32")
    if body.crc32 is not None and stored_crc is not None:
        if stored_crc != body.crc32:
            raise VerificationError(
                f"{where}: the store's CRC32 {stored_crc} for {what} is not the CRC32 of the bytes sent ({body.crc32})",
                bucket=req.bucket,
                key=req.key,
            )
        req.checksums.store_proves_crc32()
        crc_proven = True
    else:
        crc_proven = False
        if body.md5 is None:
            req.checksums.store_ignores_crc32(str(req.client.meta.endpoint_url))
    if verify_etag and (body.md5 is not None or not crc_proven):
        digest = body.md5_digest()
        if etag != digest.hex():
            raise VerificationError(
                f"{where}: the store's ETag {etag!r} for {what} is not the MD5 of the bytes sent ({digest.hex()})",
                bucket=req.bucket,
                key=req.key,
            )
    elif not crc_proven and body.md5 is None:
        raise VerificationError(
            f"{where}: the store returned no CRC32 for {what} and its ETags are not MD5s: sent again with Content-MD5",
            bucket=req.bucket,
            key=req.key,
        )
