"""The job: the one contract between producers and the daemon.

A job is a JSON object that any process, in any language, may ``LPUSH`` onto
``<prefix>:queue``. :class:`Job` is its typed, immutable form; :meth:`Job.from_json`
validates strictly and raises :class:`~s3po_client.errors.JobError` naming the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from math import isfinite
from types import MappingProxyType
from typing import Any, Literal, get_args

from .errors import JobError

Codec = Literal["gzip", "zlib", "zstd"]
CODECS: tuple[str, ...] = get_args(Codec)
FORMAT_VERSION = 1
DEFAULT_RETRIES = 3


#: What a destination's name may hold: it names a table of s3pod's config file.
DESTINATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: The longest key S3 stores, in bytes of UTF-8
#: (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html).
MAX_KEY_BYTES = 1024


def new_job_id() -> str:
    """Return a fresh, unique job id (32 hex digits: 128 random bits, as a UUID4 carries)."""
    return os.urandom(16).hex()


def derived_job_id(raw: bytes | str) -> str:
    """Return the id of a job pushed without one: 32 hex digits of a hash of its exact bytes.

    A producer in another language may ``LPUSH`` a job with no ``id``. Deriving the id from
    the bytes gives that job the same id on every claim, in every log line, in its stored
    marker and in the dead-letter list, with nothing written back to Redis. Two pushes of
    the very same text are the very same job, so sharing an id is right for them.

    >>> derived_job_id('{"bucket":"b","key":"k","path":"/tmp/f"}')
    '0c1e2635a213437c1c70910bb6ba4ff0'
    """
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    """One upload request, validated on construction.

    >>> job = Job(bucket="logs", key="2024/app.log", path="/var/spool/app.log", compress="gzip")
    >>> Job.from_json(job.to_json()) == job
    True
    """

    bucket: str
    key: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    compress: Codec | None = None
    retries: int = DEFAULT_RETRIES
    delete: bool = True
    silent: bool = False
    #: the s3pod destination (a name in its config file) to upload to; None: its default endpoint
    destination: str | None = None
    id: str = field(default_factory=new_job_id)
    enqueued_at: float | None = None
    attempt: int = 0
    v: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # The common job (plain types, no headers) is checked in one expression: enqueue()
        # builds one per call, and the full checks below cost as much as the LPUSH's own
        # client-side work. Anything the expression does not accept gets the full checks.
        at = self.enqueued_at
        if not (
            type(self.bucket) is str
            and self.bucket
            and type(self.key) is str
            and 0 < len(self.key) <= MAX_KEY_BYTES // 4  # ≤ 4 bytes of UTF-8 a character
            and type(self.path) is str
            and self.path[:1] == "/"
            and "\x00" not in self.path
            and type(self.id) is str
            and self.id
            and ((type(self.headers) is dict and not self.headers) or self.headers is _NO_HEADERS)
            and (self.compress is None or self.compress in CODECS)
            and type(self.retries) is int
            and self.retries >= 0
            and type(self.attempt) is int
            and self.attempt >= 0
            and type(self.delete) is bool
            and type(self.silent) is bool
            and self.destination is None
            and (at is None or type(at) is float or type(at) is int)
            and type(self.v) is int
            and self.v == FORMAT_VERSION
        ):
            self._check_all()
            # frozen does not freeze a dict: keep a private read-only copy.
            object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        else:
            object.__setattr__(self, "headers", _NO_HEADERS)

    def _check_all(self) -> None:
        """Raise JobError naming the first field that is wrong."""
        for name in ("bucket", "key", "path", "id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise JobError(f"field {name!r} must be a non-empty string, got {value!r}")
        key_bytes = len(self.key.encode("utf-8", "surrogatepass"))
        if key_bytes > MAX_KEY_BYTES:
            raise JobError(f"field 'key' is {key_bytes} bytes in UTF-8; S3 allows at most {MAX_KEY_BYTES}")
        if "\x00" in self.path:
            raise JobError("field 'path' must not contain a NUL byte")
        if not os.path.isabs(self.path):
            raise JobError(f"field 'path' must be an absolute path, got {self.path!r}")
        if not isinstance(self.headers, Mapping):
            raise JobError(f"field 'headers' must be an object of strings, got {self.headers!r}")
        for name, value in self.headers.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise JobError(f"field 'headers' must map strings to strings, got {name!r}: {value!r}")
        if self.compress is not None and self.compress not in CODECS:
            raise JobError(f"field 'compress' must be null or one of {', '.join(CODECS)}; got {self.compress!r}")
        for name in ("retries", "attempt"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise JobError(f"field {name!r} must be an integer >= 0, got {value!r}")
        for name in ("delete", "silent"):
            if not isinstance(getattr(self, name), bool):
                raise JobError(f"field {name!r} must be true or false, got {getattr(self, name)!r}")
        if self.destination is not None and (
            not isinstance(self.destination, str) or not DESTINATION_NAME.fullmatch(self.destination)
        ):
            raise JobError(
                f"field 'destination' must be null or a name of letters, digits, '_', '.', '-', got {self.destination!r}"
            )
        if self.enqueued_at is not None and (
            isinstance(self.enqueued_at, bool) or not isinstance(self.enqueued_at, (int, float))
        ):
            raise JobError(f"field 'enqueued_at' must be a number (Unix time), got {self.enqueued_at!r}")
        if self.v != FORMAT_VERSION or not _is_int(self.v):
            raise JobError(f"field 'v' must be {FORMAT_VERSION}, got {self.v!r}")

    @classmethod
    def from_dict(cls, data: Any) -> Job:
        """Return the job described by a decoded JSON object; raise JobError naming what is wrong.

        A job without ``id`` gets a fresh one: this builds a new job. :meth:`from_json`, which
        reads a queued job, derives a missing id from the job's bytes instead.
        """
        if not isinstance(data, dict):
            raise JobError(f"a job must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise JobError(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for required in ("bucket", "key", "path"):
            if required not in data:
                raise JobError(f"missing required field {required!r}")
        if data.get("headers") is None:
            data = {**data, "headers": {}}
        return cls(**data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Job:
        """Return the job encoded in ``raw``; raise JobError if it is not a valid job."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise JobError(f"not valid JSON: {exc}") from None
        except RecursionError:  # the decoder recurses once per nested array or object
            raise JobError("not valid JSON: nested too deeply") from None
        if isinstance(data, dict) and "id" not in data:
            data["id"] = derived_job_id(raw)
        try:
            return cls.from_dict(data)
        except JobError:
            raise
        except (TypeError, ValueError, RecursionError) as exc:  # a value no field check foresaw
            raise JobError(f"not a valid job: {type(exc).__name__}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Return the job as a plain dict, ready for ``json.dumps``.

        Without a destination, the field is left out: the job reads as it did before the
        field existed, so a daemon that does not know it still takes the job.
        """
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["headers"] = dict(self.headers)
        if data["destination"] is None:
            del data["destination"]
        return data

    def to_json(self) -> str:
        """Return the job's compact JSON form, the one pushed to Redis.

        Keys sorted, no spaces, ASCII only: ``json.dumps(job.to_dict(), separators=(",", ":"),
        sort_keys=True)``. A job of plain types is written directly, the same text at a
        third of the encoder's cost (enqueue() pays it once per call).
        """
        at, attempt, retries = self.enqueued_at, self.attempt, self.retries
        if not (
            type(attempt) is int
            and type(retries) is int
            and (at is None or (type(at) is float and isfinite(at)) or type(at) is int)
        ):
            return _ENCODER.encode(self.to_dict())
        text = _string
        compress = "null" if self.compress is None else text(self.compress)
        destination = "" if self.destination is None else f',"destination":{text(self.destination)}'
        headers = _ENCODER.encode(dict(self.headers)) if self.headers else "{}"
        return (
            f'{{"attempt":{attempt},"bucket":{text(self.bucket)},"compress":{compress},'
            f'"delete":{"true" if self.delete else "false"}{destination},'
            f'"enqueued_at":{"null" if at is None else repr(at)},"headers":{headers},'
            f'"id":{text(self.id)},"key":{text(self.key)},"path":{text(self.path)},"retries":{retries},'
            f'"silent":{"true" if self.silent else "false"},"v":{FORMAT_VERSION}}}'
        )

    def next_attempt(self) -> Job:
        """Return a copy of this job with its attempt count raised by one."""
        return replace(self, attempt=self.attempt + 1)

    def stamped(self) -> Job:
        """Return this job with ``enqueued_at`` set to now if it was unset."""
        return self if self.enqueued_at is not None else replace(self, enqueued_at=time.time())


#: the job's fields, in the order ``to_dict`` writes them (``fields()`` is slow on a hot path)
_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Job))
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
#: a string as ``_ENCODER`` writes it (ASCII, escaped): json's own C function
_string: Any = json.encoder.encode_basestring_ascii
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["CODECS", "Codec", "FORMAT_VERSION", "Job", "derived_job_id", "new_job_id"]
