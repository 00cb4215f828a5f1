"""HTTP header names → the object settings boto3 takes, checked before any byte is sent.

>>> object_args({"Content-Type": "text/plain", "x-amz-meta-owner": "ops"}, compress="gzip", name="a.txt")
{'ContentType': 'text/plain', 'Metadata': {'owner': 'ops'}, 'ContentEncoding': 'gzip'}
>>> object_args({}, compress=None, name="report.csv")
{'ContentType': 'text/csv'}
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from typing import Any

from ..codecs import content_encoding
from ..errors import JobError

#: header (lower case) → boto3 parameter, for the headers stored as they are given
HEADER_ARGS: dict[str, str] = {
    "content-type": "ContentType",
    "cache-control": "CacheControl",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "content-encoding": "ContentEncoding",
    "expires": "Expires",
    "x-amz-storage-class": "StorageClass",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "SSEKMSKeyId",
    "x-amz-server-side-encryption-context": "SSEKMSEncryptionContext",
    "x-amz-acl": "ACL",
    "x-amz-tagging": "Tagging",
    "x-amz-website-redirect-location": "WebsiteRedirectLocation",
}

#: header → boto3 parameter, for the yes/no headers
BOOLEAN_HEADER_ARGS: dict[str, str] = {
    "x-amz-server-side-encryption-bucket-key-enabled": "BucketKeyEnabled",
}

METADATA_PREFIX = "x-amz-meta-"

#: what an HTTP header name may hold: a token (https://www.rfc-editor.org/rfc/rfc9110#name-tokens)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

#: the Content-Type of a file whose name says it is compressed (``.gz``, …) but not how
#: its contents are typed: stored as the archive it is, never as Content-Encoding
_ARCHIVE_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}


#: name suffixes that say "compressed with this codec", for each codec s3po applies
_CODEC_SUFFIXES = {"gzip": (".gz", ".gzip"), "zlib": (".z", ".zz", ".zlib"), "zstd": (".zst", ".zstd")}


def guess_content_type(name: str, compress: str | None = None) -> str | None:
    """Return the Content-Type a file called ``name`` should have, or None when unknown.

    When s3po compresses the object itself (``compress``), the stored bytes are sent with
    Content-Encoding, and a client that decodes them gets the content the name describes
    without its compression suffix: ``report.csv.gz`` uploaded with ``compress="gzip"`` is
    ``text/csv``, not ``application/gzip`` (which browsers would decode into a gzip file).

    >>> guess_content_type("logs/app.log.gz")
    'application/gzip'
    >>> guess_content_type("reports/report.csv.gz", compress="gzip")
    'text/csv'
    """
    if compress is not None:
        lower = name.lower()
        for suffix in _CODEC_SUFFIXES.get(compress, ()):
            if lower.endswith(suffix):
                return guess_content_type(name[: -len(suffix)])
    mime, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:
        return _ARCHIVE_TYPES.get(encoding, "application/octet-stream")
    return mime


def object_args(headers: Mapping[str, str] | None, *, compress: str | None, name: str | None) -> dict[str, Any]:
    """Return the boto3 parameters for ``headers``; raise ``JobError`` for one s3po cannot map.

    Content-Encoding comes from ``compress`` (gzip → ``gzip``, zlib → ``deflate``, zstd →
    ``zstd``); a Content-Encoding header that says otherwise is an error. Without a
    Content-Type, one is guessed from ``name`` (the key, then the file name).
    """
    args: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    problems: list[str] = []
    for raw_name, value in (headers or {}).items():
        if not isinstance(raw_name, str) or not isinstance(value, str):
            problems.append(f"header {raw_name!r} must map a string to a string, got {value!r}")
            continue
        lower = raw_name.strip().lower()
        unsendable = _unsendable(lower, value)
        if unsendable:
            problems.append(f"header {raw_name!r}: {unsendable}")
        elif lower.startswith(METADATA_PREFIX) and len(lower) > len(METADATA_PREFIX):
            metadata[lower[len(METADATA_PREFIX) :]] = value
        elif lower in HEADER_ARGS:
            args[HEADER_ARGS[lower]] = value
        elif lower in BOOLEAN_HEADER_ARGS:
            if value.strip().lower() not in ("true", "false"):
                problems.append(f"header {raw_name!r} must be 'true' or 'false', got {value!r}")
            args[BOOLEAN_HEADER_ARGS[lower]] = value.strip().lower() == "true"
        else:
            problems.append(f"header {raw_name!r} is not one s3po can set on an object")
    if metadata:
        args["Metadata"] = metadata
    if compress is not None:
        encoding = content_encoding(compress)
        given = args.get("ContentEncoding")
        if given is not None and given.strip().lower() != encoding:
            problems.append(
                f"header Content-Encoding {given!r} contradicts compress={compress!r} "
                f"(which stores Content-Encoding {encoding!r})"
            )
        args["ContentEncoding"] = encoding
    if problems:
        raise JobError(
            "; ".join(problems) + " (settable: Content-Type, Cache-Control, Content-Disposition, "
            "Content-Language, Content-Encoding, Expires, x-amz-meta-*, x-amz-storage-class, "
            "x-amz-server-side-encryption[-aws-kms-key-id|-context|-bucket-key-enabled], "
            "x-amz-acl, x-amz-tagging, x-amz-website-redirect-location)"
        )
    if "ContentType" not in args and name:
        guessed = guess_content_type(name, compress)
        if guessed:
            args["ContentType"] = guessed
    return args


def _unsendable(name: str, value: str) -> str | None:
    """Why HTTP cannot carry this header as given (None: it can).

    http.client refuses such a header with a ValueError at send time, and botocore refuses
    non-ASCII metadata: no retry changes that, so the job is refused before any byte is sent.
    """
    if not _TOKEN.match(name):
        return "the name is not a valid HTTP header name"
    if any(c in value for c in "\r\n\0"):
        return "the value holds a line break or NUL"
    if name.startswith(METADATA_PREFIX) and not value.isascii():
        return "S3 metadata values must be ASCII"
    return None


#: boto3 parameter → HTTP header, for the settings a request built by hand may carry as given
#: (Expires is left to boto3, which normalises its date)
_PLAIN_HEADERS: dict[str, str] = {param: header for header, param in HEADER_ARGS.items() if param != "Expires"}


def http_headers(args: Mapping[str, Any]) -> dict[str, str] | None:
    """Return the HTTP headers that carry boto3 object settings ``args``, or None if one is not plain.

    The inverse of :func:`object_args` for the direct PUT (``direct_put.py``): anything it cannot
    send exactly as boto3 would (a date to normalise, a non-ASCII value) returns None, and
    the caller uses boto3.

    >>> http_headers({"ContentType": "text/plain", "Metadata": {"owner": "ops"}, "BucketKeyEnabled": True})
    {'Content-Type': 'text/plain', 'x-amz-meta-owner': 'ops', 'x-amz-server-side-encryption-bucket-key-enabled': 'true'}
    """
    headers: dict[str, str] = {}
    for param, value in args.items():
        if param == "Metadata":
            for name, meta in value.items():
                headers[f"{METADATA_PREFIX}{name}"] = meta
        elif param == "BucketKeyEnabled":
            headers["x-amz-server-side-encryption-bucket-key-enabled"] = "true" if value else "false"
        elif param in _PLAIN_HEADERS and isinstance(value, str):
            headers[_HEADER_CASE.get(param, _PLAIN_HEADERS[param])] = value
        else:
            return None
    if not all(v.isascii() and v.isprintable() and k.isascii() for k, v in headers.items()):
        return None
    return headers


_HEADER_CASE = {
    "ContentType": "Content-Type",
    "CacheControl": "Cache-Control",
    "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language",
    "ContentEncoding": "Content-Encoding",
}


def etag_is_md5(args: Mapping[str, Any]) -> bool:
    """Return True when the store's ETag will be the MD5 of the bytes (not with SSE-KMS, which hides it)."""
    return str(args.get("ServerSideEncryption", "")).lower() not in ("aws:kms", "aws:kms:dsse")
