"""The job contract: strict validation, JSON round trip, immutability."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

import pytest

from s3po_client import Job, JobError

GOOD = {"bucket": "b", "key": "k", "path": "/tmp/f"}


def test_round_trip_keeps_every_field() -> None:
    job = Job(
        bucket="b",
        key="a/b.txt",
        path="/x/y",
        headers={"Content-Type": "text/plain"},
        compress="zstd",
        retries=0,
        delete=False,
        silent=True,
        enqueued_at=12.5,
        attempt=2,
    )
    again = Job.from_json(job.to_json())
    assert again == job
    assert dict(again.headers) == {"Content-Type": "text/plain"}
    assert json.loads(job.to_json())["v"] == 1


def test_defaults_follow_the_design() -> None:
    job = Job.from_json(json.dumps(GOOD))
    assert (job.compress, job.retries, job.delete, job.silent, job.attempt, job.v) == (None, 3, True, False, 0, 1)
    assert dict(job.headers) == {}
    assert len(job.id) == 32


def test_job_is_immutable_headers_included() -> None:
    job = Job(**GOOD, headers={"Content-Type": "a/b"})
    with pytest.raises(FrozenInstanceError):
        job.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.headers["Content-Type"] = "x/y"  # type: ignore[index]


def test_next_attempt_is_a_copy() -> None:
    job = Job(**GOOD)
    assert job.next_attempt().attempt == 1 and job.attempt == 0


@pytest.mark.parametrize(
    ("change", "field_named"),
    [
        ({"compres": "gzip"}, "compres"),
        ({"bucket": ""}, "bucket"),
        ({"bucket": 3}, "bucket"),
        ({"path": "relative/file"}, "path"),
        ({"compress": "bzip2"}, "compress"),
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"retries": "3"}, "retries"),
        ({"delete": "yes"}, "delete"),
        ({"silent": 1}, "silent"),
        ({"headers": {"X": 1}}, "headers"),
        ({"headers": ["a"]}, "headers"),
        ({"v": 2}, "v"),
        ({"attempt": -2}, "attempt"),
        ({"enqueued_at": "yesterday"}, "enqueued_at"),
    ],
)
def test_bad_field_is_named(change: dict, field_named: str) -> None:
    with pytest.raises(JobError, match=field_named):
        Job.from_json(json.dumps({**GOOD, **change}))


@pytest.mark.parametrize("missing", ["bucket", "key", "path"])
def test_missing_required_field_is_named(missing: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(JobError, match=f"missing required field '{missing}'"):
        Job.from_json(json.dumps(data))


@pytest.mark.parametrize("raw", ["{not json", b"\xff\xfe", "[1, 2]", "null", '"job"'])
def test_not_a_json_object_is_rejected(raw: str | bytes) -> None:
    with pytest.raises(JobError):
        Job.from_json(raw)


def test_null_headers_and_compress_are_accepted() -> None:
    job = Job.from_json(json.dumps({**GOOD, "headers": None, "compress": None}))
    assert dict(job.headers) == {} and job.compress is None


@pytest.mark.parametrize(
    "raw, what",
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        (
            '{"bucket": "b", "key": "k", "path": "/tmp/f", "headers": ' + "[" * 5000 + "]" * 5000 + "}",
            "nested too deeply",
        ),
        (b"\xff\xfe{", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"bucket": "b", "key": "k", "path": "/tmp/f", "retries": 1e999}', "retries"),
        ('{"bucket": "b", "key": "k", "path": "/tmp/f", "headers": [1, 2]}', "headers"),
        ('{"bucket": "b", "key": "k", "path": "/tmp/f", "compress": ["gzip"]}', "compress"),
    ],
    ids=["deep-array", "deep-field", "bad-utf8", "empty", "huge-number", "headers-list", "compress-list"],
)
def test_any_malformed_input_is_a_job_error_naming_what_is_wrong(raw: str | bytes, what: str) -> None:
    with pytest.raises(JobError, match=what):
        Job.from_json(raw)


class Count(int):
    """An int subclass: valid where an integer is, written by json as the int it is."""


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"key": 'dir/naïve ☃ \U0001f600\n\t"q"\\', "path": "/tmp/é\x7f\x01"},
        {"headers": {"x-amz-meta-b": "2", "Content-Type": "text/plain; charset=ü"}, "compress": "gzip"},
        {"destination": "eu-archive", "retries": 0, "delete": False, "silent": True, "attempt": 7},
        {"enqueued_at": None},
        {"enqueued_at": 1700000000},
        {"enqueued_at": 1e-7},
        {"enqueued_at": float("nan")},
        {"attempt": Count(2), "retries": Count(5)},
        {"key": "k" * 300},
    ],
)
def test_to_json_is_the_encoders_text(fields: dict[str, object]) -> None:
    """The direct writer of ``to_json`` gives exactly what json.dumps gives (keys sorted, compact, ASCII)."""
    job = Job(**{**GOOD, "enqueued_at": 1733560000.123456, **fields})  # type: ignore[arg-type]
    assert job.to_json() == json.dumps(job.to_dict(), separators=(",", ":"), sort_keys=True)
    again = Job.from_json(job.to_json())
    assert again.to_dict().keys() == job.to_dict().keys()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "é" * 513}, "key"),
        ({"path": "relative"}, "path"),
        ({"headers": []}, "headers"),
        ({"headers": ""}, "headers"),
        ({"retries": True}, "retries"),
        ({"enqueued_at": False}, "enqueued_at"),
        ({"v": 1.0}, "v"),
        ({"destination": "bad name"}, "destination"),
    ],
)
def test_a_bad_field_is_named_whichever_way_it_is_checked(fields: dict[str, object], field: str) -> None:
    with pytest.raises(JobError, match=f"'{field}'"):
        Job(**{**GOOD, **fields})  # type: ignore[arg-type]


def test_headers_are_read_only_even_when_empty() -> None:
    job = Job(**GOOD)
    with pytest.raises(TypeError):
        job.headers["x"] = "y"  # type: ignore[index]
