"""Transient and permanent failures, injected on real traffic by the fault proxy (no mocks)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_transfer import PART, SMALL, THRESHOLD, make_engine, no_uploads_left, pattern  # noqa: F401

from s3po_client.errors import DownloadError, JobError, SourceChangedError, UploadError, VerificationError
from s3po_client.retry import RetryPolicy
from s3po_client.settings import MiB, TransferSettings
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.state import SavedUpload

NO_REQUEST_RETRIES = TransferSettings(
    multipart_threshold_bytes=THRESHOLD, part_size_bytes=PART, max_concurrency=3, request_retries=0
)
QUICK = TransferSettings(
    multipart_threshold_bytes=THRESHOLD, part_size_bytes=PART, max_concurrency=3, request_backoff_base_s=0.01
)


def puts(proxy: Any, query: str = "") -> list[tuple[str, str, str]]:
    return [r for r in proxy.requests if r[0] == "PUT" and query in r[2]]


def test_a_transient_error_is_retried_within_one_attempt(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    rule = fault_proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=2)
    result = engine.upload_bytes(bucket, "k", b"payload", retries=0)
    assert result is not False and rule.hits == 2 and len(puts(fault_proxy)) == 3
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


@pytest.mark.parametrize("action", ["error", "reset", "corrupt"])
def test_a_failed_part_is_retried_alone(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, action: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    data = pattern(3 * PART + 10)
    rule = fault_proxy.add_rule(action, method="PUT", query="partNumber=2", status=500, code="InternalError")
    result = engine.upload_bytes(bucket, "parts", data, retries=0)
    assert result is not False and rule.hits == 1
    sent = [q for _, _, q in puts(fault_proxy, "partNumber=")]
    assert sum("partNumber=2&" in q + "&" for q in sent) == 2  # part 2 twice
    assert sum("partNumber=1&" in q + "&" for q in sent) == 1  # the others once
    assert s3.get_object(Bucket=bucket, Key="parts")["Body"].read() == data
    assert no_uploads_left(s3, bucket)


def test_a_corrupted_single_put_is_caught_and_sent_again(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    rule = fault_proxy.add_rule("corrupt", method="PUT")
    engine.upload_bytes(bucket, "c", b"precious bytes" * 100)
    assert rule.hits == 1 and len(puts(fault_proxy)) == 2
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"precious bytes" * 100


def test_attempts_retry_after_the_policy_delay(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, bucket: str
) -> None:
    engine = make_engine(NO_REQUEST_RETRIES, endpoint=fault_proxy.url, retry=RetryPolicy(base_s=0.01))
    fault_proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=2)
    assert engine.upload_bytes(bucket, "k", b"x", retries=2) is not False
    fault_proxy.clear()
    fault_proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=None)
    with pytest.raises(UploadError, match="SlowDown") as info:
        engine.upload_bytes(bucket, "k", b"x", retries=2)
    assert info.value.transient is True and info.value.attempt == 2
    assert engine.upload_bytes(bucket, "k", b"x", retries=1, silent=True) is False


def test_a_permanent_error_fails_without_waiting_for_backoff(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, bucket: str
) -> None:
    # An hour of backoff: if the engine waited for it, the test would time out.
    engine = make_engine(QUICK, endpoint=fault_proxy.url, retry=RetryPolicy(base_s=3600))
    fault_proxy.add_rule("error", method="PUT", status=403, code="AccessDenied", times=None)
    started = time.monotonic()
    with pytest.raises(UploadError, match="AccessDenied") as info:
        engine.upload_bytes(bucket, "k", b"x", retries=3)
    assert time.monotonic() - started < 60
    assert info.value.transient is False and info.value.bucket == bucket and info.value.key == "k"
    assert len(puts(fault_proxy)) == 1


def test_an_interrupted_multipart_upload_leaves_no_parts(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    fault_proxy.add_rule("error", method="PUT", query="partNumber=3", status=500, code="InternalError", times=None)
    with pytest.raises(UploadError, match="InternalError") as info:
        engine.upload_bytes(bucket, "broken", pattern(4 * PART), retries=0)
    assert info.value.transient is True
    assert [r for r in fault_proxy.requests if r[0] == "DELETE" and "uploadId=" in r[2]]  # aborted
    assert no_uploads_left(s3, bucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_a_file_changed_while_sent_is_not_stored(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, tmp_path: Path
) -> None:
    engine = make_engine(QUICK)
    path = tmp_path / "growing.log"
    path.write_bytes(pattern(3 * PART))

    def append_once(done: int, total: int | None) -> None:
        if done and path.stat().st_size == 3 * PART:
            with open(path, "ab") as f:
                f.write(b"one more line\n")

    with pytest.raises(SourceChangedError, match="changed while it was sent") as info:
        engine.upload_file(bucket, "growing.log", str(path), progress=append_once, retries=0)
    assert info.value.transient is True
    assert no_uploads_left(s3, bucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    result = engine.upload_file(bucket, "growing.log", str(path), retries=0)
    assert result is not False and result.bytes_read == 3 * PART + 14


def grow_at_start(path: Path, extra: bytes) -> Callable[[int, int | None], None]:
    """A progress callback that appends ``extra`` once, after the file was measured and before it is read."""

    def grow(done: int, total: int | None) -> None:
        if done == 0 and path.stat().st_size == total:
            with open(path, "ab") as f:
                f.write(extra)

    return grow


@pytest.mark.parametrize("extra", [1, 100], ids=["one-byte", "a-line"])
def test_a_small_file_that_grew_after_it_was_measured_is_not_stored(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, tmp_path: Path, extra: int
) -> None:
    engine = make_engine(QUICK)
    path = tmp_path / "small.log"
    path.write_bytes(pattern(4096))
    with pytest.raises(SourceChangedError, match="changed while it was sent"):
        engine.upload_file(bucket, "small.log", str(path), progress=grow_at_start(path, b"x" * extra), retries=0)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    result = engine.upload_file(bucket, "small.log", str(path), retries=0)
    assert result is not False and result.bytes_read == 4096 + extra


def test_a_small_file_that_grew_past_the_threshold_after_it_was_measured_goes_multipart(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    path = tmp_path / "small.log"
    path.write_bytes(pattern(4096))
    with pytest.raises(SourceChangedError, match="changed while it was sent"):
        engine.upload_file(bucket, "small.log", str(path), progress=grow_at_start(path, pattern(THRESHOLD)), retries=0)
    assert puts(fault_proxy, "partNumber=1")  # read on to the threshold, then cut into parts
    assert no_uploads_left(s3, bucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_a_failed_range_is_fetched_again(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    data = pattern(2 * THRESHOLD)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    rule = fault_proxy.add_rule("reset", method="GET", times=2)
    target = tmp_path / "big"
    engine.download_file(bucket, "big", str(target), retries=0)
    assert rule.hits == 2 and target.read_bytes() == data
    gets = [r for r in fault_proxy.requests if r[0] == "GET"]
    assert len(gets) == 3 + 2  # three ranges of 5 MiB, two of them twice


def test_a_download_that_keeps_failing_leaves_no_file(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    engine = make_engine(NO_REQUEST_RETRIES, endpoint=fault_proxy.url)
    s3.put_object(Bucket=bucket, Key="big", Body=pattern(2 * THRESHOLD))
    fault_proxy.add_rule("error", method="GET", query="", status=503, code="SlowDown", times=None)
    target = tmp_path / "sub" / "big"
    with pytest.raises(DownloadError, match="SlowDown") as info:
        engine.download_file(bucket, "big", str(target), retries=1)
    assert info.value.transient is True and info.value.attempt == 1
    assert list((tmp_path / "sub").iterdir()) == []


def test_the_object_replaced_during_a_download_is_not_stitched(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    # more ranges (6) than the engine fetches ahead (3), so some are asked for after the swap
    old, new = pattern(6 * PART, 1), pattern(6 * PART, 2)
    s3.put_object(Bucket=bucket, Key="v", Body=old)
    replaced = []

    def replace_once(done: int, total: int | None) -> None:
        if done and not replaced:
            s3.put_object(Bucket=bucket, Key="v", Body=new)
            replaced.append(True)

    with pytest.raises(DownloadError, match="PreconditionFailed"):
        engine.download_fileobj(bucket, "v", _Discard(replace_once), retries=0)
    assert engine.download_bytes(bucket, "v", retries=1) == new


class _Discard:
    """A sink that drops the bytes and calls ``hook`` after each write."""

    def __init__(self, hook: Callable[[int, int | None], None]) -> None:
        self.hook = hook
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        self.hook(self.count, None)
        return len(data)

    def seekable(self) -> bool:
        return False


def test_request_retries_give_up_on_a_dead_endpoint(make_engine: Callable[..., TransferEngine], bucket: str) -> None:
    from servers import free_port

    engine = make_engine(
        TransferSettings(request_retries=1, request_backoff_base_s=0.01, connect_timeout_s=1),
        endpoint=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(UploadError, match="connect") as info:
        engine.upload_bytes(bucket, "k", b"x", retries=1)
    assert info.value.transient is True
    assert MiB  # the settings module's unit is importable beside the engine


def checksum_headers(proxy: Any) -> list[tuple[str, bool, bool]]:
    """(query, carries Content-MD5, carries x-amz-checksum-crc32) of every PUT the proxy saw."""
    return [
        (q, "content-md5" in h, "x-amz-checksum-crc32" in h)
        for (m, _, q), h in zip(proxy.requests, proxy.request_headers)
        if m == "PUT"
    ]


def test_uploads_carry_crc32_alone_where_the_store_proves_it(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)  # checksum="auto", the default
    data = pattern(3 * PART + 10)
    assert engine.upload_bytes(bucket, "multi", data) is not False
    assert engine.upload_bytes(bucket, "single", b"small body") is not False
    sent = checksum_headers(fault_proxy)
    assert len(sent) == 5 and all(crc and not md5 for _, md5, crc in sent), sent
    assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == b"small body"


def test_a_store_that_returns_no_checksum_is_sent_content_md5_and_nothing_unproven_counts(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    fault_proxy.add_rule("no-checksum", method="PUT", times=None)  # it takes the header, says nothing
    data = pattern(3 * PART + 10)
    assert engine.upload_bytes(bucket, "multi", data) is not False
    assert engine.upload_bytes(bucket, "single", b"small body") is not False
    sent = checksum_headers(fault_proxy)
    # the parts in flight before the first answer went with CRC32 only (each then proven by its
    # ETag, the MD5 of the bytes still in memory); everything after carries Content-MD5
    assert sent[-1] == (sent[-1][0], True, False), sent
    assert any(not md5 for _, md5, _ in sent) and sum(md5 for _, md5, _ in sent) >= 1
    assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == b"small body"
    # and a store that says nothing of the checksum cannot pass other bytes off as these
    fault_proxy.clear()
    fault_proxy.add_rule("etag", method="PUT", times=None, hide_checksum=True)
    engine2 = make_engine(QUICK, endpoint=fault_proxy.url)
    with pytest.raises(VerificationError, match="is not the MD5 of the bytes sent"):
        engine2.upload_bytes(bucket, "lied-to", b"other bytes", retries=0)


def test_a_store_that_refuses_crc32_gets_content_md5(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    for header in ("x-amz-checksum-crc32", "x-amz-checksum-algorithm"):
        fault_proxy.add_rule("error", header=header, status=400, code="InvalidArgument", times=None)
    data = pattern(3 * PART + 10)
    assert engine.upload_bytes(bucket, "single", b"small body", retries=0) is not False
    assert engine.upload_bytes(bucket, "multi", data, retries=0) is not False
    assert s3.get_object(Bucket=bucket, Key="multi")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == b"small body"
    assert no_uploads_left(s3, bucket)
    sent = checksum_headers(fault_proxy)
    assert sent[0][2] and not sent[0][1] and all(md5 and not crc for _, md5, crc in sent[1:]), sent


def test_md5_mode_sends_content_md5_alone(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str
) -> None:
    from dataclasses import replace

    engine = make_engine(replace(QUICK, checksum="md5"), endpoint=fault_proxy.url)
    assert engine.upload_bytes(bucket, "multi", pattern(2 * PART + 1)) is not False
    assert engine.upload_bytes(bucket, "single", b"x") is not False
    sent = checksum_headers(fault_proxy)
    assert len(sent) == 4 and all(md5 and not crc for _, md5, crc in sent), sent


@pytest.mark.parametrize("size", [10, THRESHOLD + 1], ids=["single", "multipart"])
@pytest.mark.parametrize(
    "headers",
    [{"x-amz-meta-bad name": "v"}, {"x-amz-meta-owner": "a\r\nx-injected: 1"}, {"x-amz-meta-é": "v"}],
    ids=["space-in-name", "newline-in-value", "non-ascii-name"],
)
def test_a_header_http_cannot_carry_is_a_job_error_before_any_byte_is_sent(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, bucket: str, size: int, headers: dict[str, str]
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    with pytest.raises(JobError, match="header"):
        engine.upload_bytes(bucket, "bad-header", pattern(size), headers=headers, retries=2)
    assert fault_proxy.requests == [], "nothing sent, nothing retried"


def test_a_redirect_on_a_single_put_is_permanent_and_says_why(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, bucket: str
) -> None:
    engine = make_engine(QUICK, endpoint=fault_proxy.url)
    rule = fault_proxy.add_rule("error", method="PUT", status=301, code="PermanentRedirect", times=None)
    with pytest.raises(UploadError, match="redirect") as info:
        engine.upload_bytes(bucket, "moved", b"small body", retries=2)
    assert info.value.transient is False and rule.hits == 1


class FileState:
    """A MultipartState kept in a JSON file: what a killed process leaves behind (s3pod keeps it in Redis)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> SavedUpload | None:
        return SavedUpload.from_json(self.path.read_text()) if self.path.exists() else None

    def save(self, saved: SavedUpload) -> None:
        self.path.write_text(saved.to_json())

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


#: a run killed (SIGKILL) once CreateMultipartUpload answered, before it recorded the upload's id
KILLED_AFTER_CREATE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from test_transfer_faults import FileState, QUICK
from s3po_client.settings import S3Settings
from s3po_client.transfer import TransferEngine
from pathlib import Path

class DiesOnTheId(FileState):
    def save(self, saved):
        if saved.upload_id:
            os.kill(os.getpid(), signal.SIGKILL)
        super().save(saved)

endpoint, key_id, secret, bucket, path, record = sys.argv[2:]
engine = TransferEngine(S3Settings(access_id=key_id, secret_key=secret, region="us-east-1", endpoint_url=endpoint), QUICK)
engine.upload_file(bucket, "orphan", path, multipart_state=DiesOnTheId(Path(record)))
"""


def test_an_upload_created_by_a_killed_run_is_found_without_the_stores_clock(
    make_engine: Callable[..., TransferEngine], s3_server: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    from servers import rewriting_proxy

    data = pattern(THRESHOLD + 1)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    record = tmp_path / "record.json"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_CREATE, str(Path(__file__).parent), s3_server.url]
        + [s3_server.access_key, s3_server.secret_key, bucket, str(source), str(record)],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert FileState(record).load() is not None and FileState(record).load().pending  # type: ignore[union-attr]
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1, "the orphan"
    # a store whose clock is years behind (moto's server says 2010 for every upload)
    with rewriting_proxy(s3_server.port, [(rb"<Initiated>\d{4}", b"<Initiated>2010")]) as proxy:
        engine = make_engine(QUICK, endpoint=proxy.url)
        assert engine.upload_file(bucket, "orphan", source, multipart_state=FileState(record)) is not False
    assert no_uploads_left(s3, bucket), s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert not record.exists()
    assert s3.get_object(Bucket=bucket, Key="orphan")["Body"].read() == data
