"""How an engine's uploads prove their bytes to the store: CRC32, MD5, or CRC32 where the store proves it.

Every PUT and part is proven before an upload counts as stored. Two proofs exist:

- **MD5**: ``Content-MD5`` on the request (the store refuses damaged bytes) and the ETag
  it returns compared with the MD5 s3po computed. Every S3-compatible store checks it.
- **CRC32**: ``x-amz-checksum-crc32`` on the request (the store refuses damaged bytes) and
  the checksum it returns compared with s3po's. About a third of MD5's CPU here (a 512
  MiB upload: 1.52 client CPU-s against 2.08), but only stores with flexible checksums
  (AWS, and many S3-compatible stores) check and return it.

``TransferSettings.checksum`` chooses: ``"md5"``, ``"crc32"`` (both headers, both
compared), or ``"auto"`` (the default): CRC32 alone while the store proves it; the
first response without the checksum, or a refusal of the header, switches this engine to
MD5 for good. A request the store acknowledged without proving it is never taken as
stored: its MD5 is compared with the ETag (the bytes are still in memory), and where
that is no proof either (SSE-KMS ETags), the request is sent again with Content-MD5.
"""

from __future__ import annotations

import logging
import threading

from ..settings import ChecksumMode

logger = logging.getLogger(__name__)

#: error codes with which a store refuses a checksum header it does not implement
REFUSAL_CODES = frozenset(
    {"InvalidArgument", "InvalidRequest", "NotImplemented", "UnsupportedHeader", "BadRequest", "400", "501"}
)


class ChecksumChoice:
    """Which checksums one engine's uploads send; in mode ``"auto"``, learned from the store's answers.

    >>> choice = ChecksumChoice("auto")
    >>> choice.sends_md5(), choice.sends_crc32()
    (False, True)
    >>> choice.store_ignores_crc32("http://127.0.0.1:8333")
    >>> choice.sends_md5(), choice.sends_crc32()
    (True, False)
    """

    def __init__(self, mode: ChecksumMode) -> None:
        self.mode = mode
        #: in mode "auto": None until the store answered, then whether it proves CRC32
        self._store_proves_crc32: bool | None = None
        self._lock = threading.Lock()

    def sends_md5(self) -> bool:
        """Whether a request built now carries Content-MD5."""
        return self.mode != "auto" or self._store_proves_crc32 is False

    def sends_crc32(self) -> bool:
        """Whether a request built now carries x-amz-checksum-crc32."""
        return self.mode == "crc32" or (self.mode == "auto" and self._store_proves_crc32 is not False)

    @property
    def learning(self) -> bool:
        """Whether the store has not yet shown whether it proves CRC32 (mode "auto" only)."""
        return self.mode == "auto" and self._store_proves_crc32 is None

    def store_proves_crc32(self) -> None:
        if self.mode == "auto" and self._store_proves_crc32 is None:
            with self._lock:
                self._store_proves_crc32 = True

    def store_ignores_crc32(self, endpoint: str) -> None:
        """The store acknowledged a request without its checksum, or refused the header: MD5 from now on."""
        if self.mode != "auto" or self._store_proves_crc32 is False:
            return
        with self._lock:
            self._store_proves_crc32 = False
        logger.info(
            "the store at %s does not prove x-amz-checksum-crc32: uploads carry Content-MD5 from now on", endpoint
        )


__all__ = ["ChecksumChoice", "REFUSAL_CODES"]
