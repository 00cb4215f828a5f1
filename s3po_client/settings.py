"""Settings as values: where the S3 store is (``S3Settings``) and how transfers behave (``TransferSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from .errors import ConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# S3's own limits: https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
#: the smallest part S3 accepts, except for the last one
MIN_PART_SIZE_BYTES = 5 * MiB
#: the largest part S3 accepts
MAX_PART_SIZE_BYTES = 5 * GiB
#: the most parts one multipart upload may have
MAX_PARTS = 10_000
#: the largest object one PUT may store
MAX_SINGLE_PUT_BYTES = 5 * GiB
#: the largest object S3 stores
MAX_OBJECT_BYTES = 5 * 1024 * GiB

#: How uploads prove their integrity (see ``TransferSettings.checksum``).
ChecksumMode = Literal["auto", "md5", "crc32"]
CHECKSUM_MODES: tuple[str, ...] = get_args(ChecksumMode)
#: How a bucket is named in a request's URL (botocore's ``addressing_style``).
AddressingStyle = Literal["path", "virtual", "auto"]
ADDRESSING_STYLES: tuple[str, ...] = get_args(AddressingStyle)


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach the S3 store. Without keys, boto3's standard credential chain applies."""

    access_id: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    #: CA bundle (PEM file) that verifies the store's TLS certificate, for a private CA;
    #: None: botocore's own choice (``AWS_CA_BUNDLE``, ``ca_bundle`` in the AWS config, certifi)
    ca_bundle: str | None = None
    #: ``path`` (``endpoint/bucket/key``), ``virtual`` (``bucket.endpoint/key``) or ``auto``;
    #: None: path-style with an ``endpoint_url`` (most S3-compatible stores), else ``auto``
    addressing_style: str | None = None
    #: extra keyword arguments for ``botocore.config.Config`` (e.g. ``connect_timeout``)
    boto_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.access_id is None) != (self.secret_key is None):
            raise ConfigError("give both the access id and the secret key, or neither")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint URL must start with http:// or https://, got {self.endpoint_url!r}")
        if self.addressing_style is not None and self.addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(
                f"addressing style must be one of {', '.join(ADDRESSING_STYLES)}, got {self.addressing_style!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    """How the transfer engine moves bytes: multipart sizes, parallelism, checksums, compression.

    Memory: one upload or download holds at most about
    ``(max_concurrency + 1) × part_size_bytes`` of data (parts in flight plus the one being
    filled), 40 MiB with the defaults, whatever the object's size. A part of an object
    larger than 10,000 × ``part_size_bytes`` is bigger (the part size grows so any object up
    to 5 TiB fits in S3's 10,000 parts), and so is that bound.

    >>> TransferSettings(part_size_bytes=16 * MiB, max_concurrency=8).multipart_threshold_bytes
    16777216
    """

    #: objects at least this large go as multipart uploads (and downloads as parallel ranged GETs)
    multipart_threshold_bytes: int = 16 * MiB
    #: the size of each part (and of each ranged GET); grows by itself for objects past
    #: 10,000 parts. Memory cost: one part per thread in flight, plus one being read.
    part_size_bytes: int = 8 * MiB
    #: parts (or ranges) in flight at once for one transfer; threads per transfer
    max_concurrency: int = 4
    #: HTTP connections the engine's client keeps; share it between transfers running at once
    max_pool_connections: int = 32
    #: times one S3 request (a PUT, a part, a ranged GET, …) is retried alone within an attempt,
    #: on a transient failure, before the attempt fails
    request_retries: int = 4
    #: the wait before a request's first retry; doubles each time, capped at 10 s
    request_backoff_base_s: float = 0.25
    #: how each PUT and part proves its bytes (see :mod:`s3po_client.transfer.checksums`).
    #: ``"auto"`` (default): ``x-amz-checksum-crc32``, compared with the CRC32 the store
    #: returns, while the store proves it (AWS, stores with flexible checksums); the first
    #: answer without it, or a refusal of the header, switches the engine to Content-MD5.
    #: CRC32 costs about a third of MD5's CPU. ``"md5"``: Content-MD5 on every request,
    #: compared with the ETag; works on every S3-compatible store. ``"crc32"``: both, both
    #: compared.
    #: (The flexible checksums boto3 adds by itself since 1.36 stay off.)
    checksum: ChecksumMode = "auto"
    #: sign each body with SHA-256 (SigV4 payload signing). Off by default: the signed
    #: checksum header (CRC32 or Content-MD5) already proves the bytes, and over plain
    #: HTTP signing would hash every byte a second time; turn it on for a store that
    #: requires signed payloads.
    sign_payload: bool = False
    #: send single PUTs and multipart parts as requests built and signed by s3po with
    #: botocore's signer over pooled connections, each body in one write, instead of through
    #: boto3's whole call stack: half the client CPU per small object, and per large one.
    #: Used only with an explicit ``endpoint_url`` and headers that map one to one; anything
    #: else uses boto3.
    lean_put: bool = True
    #: compression level: ``None`` is the codec's fast default (ISA-L level 1 for gzip/zlib,
    #: zstd level 1). gzip/zlib take 0–3 with ISA-L (higher values use 3) and 1–9 with the
    #: standard library fallback; zstd takes 1–22.
    compress_level: int | None = None
    #: ``download_file`` flushes the file to disk (``fsync``) before renaming it into place,
    #: so that a power loss right after cannot leave it short or empty. Off by default, as
    #: in boto3, the AWS CLI and rclone: it waits for the disk (measured: 0.4–5 s for 1 GiB
    #: on a busy disk, up to a third of the download). Either way the file appears only
    #: complete and verified, by an atomic rename, and a failed download leaves nothing.
    fsync_downloads: bool = False
    #: seconds to wait for a TCP connection, and for a response's next bytes
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def pooled_for(self, transfers: int) -> TransferSettings:
        """Return these settings with enough pooled connections for ``transfers`` transfers at once.

        Each transfer may have ``max_concurrency`` parts in flight plus one request of its own
        (a create, a complete, a HEAD): the one rule for ``s3po --jobs`` and ``s3pod --concurrency``.
        """
        needed = transfers * (self.max_concurrency + 1)
        return self if needed <= self.max_pool_connections else replace(self, max_pool_connections=needed)

    def __post_init__(self) -> None:
        problems = []
        if self.part_size_bytes < MIN_PART_SIZE_BYTES or self.part_size_bytes > MAX_PART_SIZE_BYTES:
            problems.append(f"part_size_bytes must be between 5 MiB and 5 GiB, got {self.part_size_bytes}")
        if self.multipart_threshold_bytes < 1 or self.multipart_threshold_bytes > MAX_SINGLE_PUT_BYTES:
            problems.append(
                f"multipart_threshold_bytes must be between 1 and 5 GiB, got {self.multipart_threshold_bytes}"
            )
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_pool_connections < 1:
            problems.append(f"max_pool_connections must be at least 1, got {self.max_pool_connections}")
        if self.request_retries < 0:
            problems.append(f"request_retries must be at least 0, got {self.request_retries}")
        if self.request_backoff_base_s < 0:
            problems.append(f"request_backoff_base_s must be at least 0, got {self.request_backoff_base_s}")
        if self.checksum not in CHECKSUM_MODES:
            problems.append(f"checksum must be one of {', '.join(CHECKSUM_MODES)}, got {self.checksum!r}")
        if self.compress_level is not None and not 0 <= self.compress_level <= 22:
            problems.append(f"compress_level must be between 0 and 22, got {self.compress_level}")
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            problems.append("connect_timeout_s and read_timeout_s must be positive")
        if problems:
            raise ConfigError("; ".join(problems))
