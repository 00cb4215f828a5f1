"""Downloads of multipart objects against the real loopback S3 server: requests, part sizes, verification, failures.

The objects are written part by part with boto3 (``create_multipart_upload`` /
``upload_part``), so their part sizes are exactly the test's: all of one size, as boto3,
the AWS CLI, rclone and s3po write them, or not.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from test_cli_transfer import cli_env  # noqa: F401 - a fixture
from test_transfer import make_engine  # noqa: F401 - a fixture

from s3po_client.errors import DownloadError, VerificationError
from s3po_client.settings import MiB, TransferSettings
from s3po_client.transfer import TransferEngine

PART = 5 * MiB
# parts in flight (3) fewer than the parts, so some GETs are asked for after the first ones end
SETTINGS = TransferSettings(
    multipart_threshold_bytes=6 * MiB, part_size_bytes=PART, max_concurrency=3, request_backoff_base_s=0.01
)
NO_REQUEST_RETRIES = TransferSettings(
    multipart_threshold_bytes=6 * MiB, part_size_bytes=PART, max_concurrency=3, request_retries=0
)


def put_parts(s3: Any, bucket: str, key: str, sizes: list[int], stored: bytes | None = None, **args: Any) -> bytes:
    """Store ``key`` as a multipart upload with parts of exactly ``sizes`` (the last one: the rest of
    ``stored``, when given); return the bytes stored."""
    if stored is None:
        chunks = [os.urandom(size) for size in sizes]
    else:
        ends = [sum(sizes[:n]) for n in range(1, len(sizes))]
        chunks = [stored[a:b] for a, b in zip([0, *ends], [*ends, len(stored)])]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **args)["UploadId"]
    done = []
    for number, chunk in enumerate(chunks, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk)["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done})
    return b"".join(chunks)


def requests(proxy: Any, method: str) -> list[str]:
    """The query strings of the ``method`` requests the proxy saw."""
    return [query for m, _path, query in proxy.requests if m == method]


UNIFORM = [PART] * 6 + [MiB + 7]  # what boto3, the AWS CLI, rclone and s3po write
FITS_ONE_SIZE = [6 * MiB, PART, 7 * MiB]  # not of one size, yet 3 × the first part's size fits the object
DOES_NOT_FIT = [PART, 9 * MiB, 9 * MiB]  # 3 × the first part's size is less than the object


def test_a_multipart_download_asks_one_head_for_the_parts_then_one_get_per_part(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = put_parts(s3, bucket, "uniform", UNIFORM)
    engine = make_engine(SETTINGS, endpoint=fault_proxy.url)
    target = tmp_path / "uniform"
    engine.download_file(bucket, "uniform", target)
    assert target.read_bytes() == data
    heads = requests(fault_proxy, "HEAD")
    assert sorted(heads) == ["", "partNumber=1"], "one HEAD, then one HEAD ?partNumber=1"
    assert len(requests(fault_proxy, "GET")) == len(UNIFORM), "one GET per part"
    assert [p.name for p in tmp_path.iterdir()] == ["uniform"]


@pytest.mark.parametrize("sizes", [FITS_ONE_SIZE, DOES_NOT_FIT], ids=["fits-one-size", "does-not-fit"])
@pytest.mark.parametrize("how", ["file", "bytes", "seekable", "pipe", "decoded"])
def test_parts_of_different_sizes_download_and_verify(
    make_engine: Callable[..., TransferEngine],
    fault_proxy: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    sizes: list[int],
    how: str,
) -> None:
    if how == "decoded":  # a gzip stream cut into parts of those sizes, its last one a little shorter
        plain = os.urandom(sum(sizes) - 64 * 1024)
        put_parts(s3, bucket, "odd", sizes, gzip.compress(plain, compresslevel=1), ContentEncoding="gzip")
    else:
        data = put_parts(s3, bucket, "odd", sizes)
    engine = make_engine(SETTINGS, endpoint=fault_proxy.url)
    if how == "file":
        target = tmp_path / "odd"
        engine.download_file(bucket, "odd", target)
        assert target.read_bytes() == data
        assert [p.name for p in tmp_path.iterdir()] == ["odd"]
    elif how == "decoded":  # decoded: written in order
        target = tmp_path / "odd"
        engine.download_file(bucket, "odd", target)
        assert target.read_bytes() == plain
        assert [p.name for p in tmp_path.iterdir()] == ["odd"]
    elif how == "bytes":
        assert engine.download_bytes(bucket, "odd") == data
    elif how == "seekable":
        with open(tmp_path / "odd", "w+b") as f:
            f.write(b"kept")
            assert engine.download_fileobj(bucket, "odd", f) == len(data)
            f.seek(0)
            assert f.read() == b"kept" + data
    else:
        assert how == "pipe"
        pipe = _Pipe()
        assert engine.download_fileobj(bucket, "odd", pipe) == len(data)
        assert bytes(pipe.data) == data
    heads = requests(fault_proxy, "HEAD")
    gets = requests(fault_proxy, "GET")
    part_heads = sorted(q for q in heads if q)
    every_part = sorted(f"partNumber={n}" for n in range(1, len(sizes) + 1))
    if how == "pipe":  # cannot start again: every part's range is asked for first
        assert part_heads == every_part and len(gets) == len(sizes)
    elif sizes is DOES_NOT_FIT:  # the guess does not fit the size: not used
        assert part_heads == sorted(["partNumber=1", *every_part]) and len(gets) == len(sizes)
    elif how == "file":  # the guess was wrong: the file is checked again, not fetched again
        assert part_heads == sorted(["partNumber=1", *every_part]) and len(gets) == len(sizes)
    else:  # written in order under a wrong guess: fetched again from the first byte
        assert part_heads == sorted(["partNumber=1", *every_part]) and len(gets) == 2 * len(sizes)


@pytest.mark.parametrize("sizes", [UNIFORM, FITS_ONE_SIZE], ids=["uniform", "fits-one-size"])
@pytest.mark.parametrize("how", ["file", "bytes"])
def test_bytes_damaged_on_the_way_fail_verification_and_leave_nothing(
    make_engine: Callable[..., TransferEngine],
    fault_proxy: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    sizes: list[int],
    how: str,
) -> None:
    data = put_parts(s3, bucket, "damaged", sizes)
    engine = make_engine(SETTINGS, endpoint=fault_proxy.url)
    # every GET's answer damaged (a download that starts again from the first byte gets damaged bytes again)
    rule = fault_proxy.add_rule("corrupt", method="GET", times=None)
    target = tmp_path / "sub" / "damaged"
    with pytest.raises(VerificationError, match="ETag") as info:
        if how == "file":
            engine.download_file(bucket, "damaged", target, retries=0)
        else:
            engine.download_bytes(bucket, "damaged", retries=0)
    assert rule.hits >= len(sizes) and info.value.transient is True
    if how == "file":
        assert list((tmp_path / "sub").iterdir()) == [], "no file, no temporary file"
    rule.times = rule.hits  # the bytes come undamaged from now on
    assert engine.download_bytes(bucket, "damaged", retries=0) == data
    engine.download_file(bucket, "damaged", target, retries=0)
    assert target.read_bytes() == data


#: one GET at a time: then a GET written at offsets takes whole parts up to half the object
ONE_AT_A_TIME = replace(SETTINGS, max_concurrency=1)


@pytest.mark.parametrize("sizes", [UNIFORM, [6 * MiB] + [PART] * 5 + [7 * MiB]], ids=["uniform", "fits-one-size"])
def test_parts_written_at_their_offsets_go_several_to_a_get_and_each_is_checked(
    make_engine: Callable[..., TransferEngine],
    fault_proxy: Any,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    sizes: list[int],
) -> None:
    data = put_parts(s3, bucket, "grouped", sizes)
    engine = make_engine(ONE_AT_A_TIME, endpoint=fault_proxy.url)
    result = engine.get_file(bucket, "grouped", tmp_path / "grouped", retries=0)
    assert (tmp_path / "grouped").read_bytes() == data and result.verified == "md5-composite"
    assert len(requests(fault_proxy, "GET")) == 3, "each GET takes whole parts up to half the object"
    rule = fault_proxy.add_rule("corrupt", method="GET", times=1)  # one GET's bytes damaged on the way
    with pytest.raises(VerificationError, match="ETag"):
        engine.get_file(bucket, "grouped", tmp_path / "sub" / "grouped", retries=0)
    assert rule.hits == 1 and list((tmp_path / "sub").iterdir()) == [], "no file, no temporary file"


def test_a_failed_download_written_at_offsets_leaves_nothing(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_parts(s3, bucket, "failing", UNIFORM)
    engine = make_engine(NO_REQUEST_RETRIES, endpoint=fault_proxy.url)
    # the first GETs go through, a later one fails for good
    fault_proxy.add_rule("delay", method="GET", times=3, delay_s=0)
    fault_proxy.add_rule("error", method="GET", status=503, code="SlowDown", times=None)
    target = tmp_path / "sub" / "failing"
    with pytest.raises(DownloadError, match="SlowDown"):
        engine.download_file(bucket, "failing", target, retries=1)
    assert list((tmp_path / "sub").iterdir()) == []


def test_an_interrupt_from_the_progress_callback_stops_the_download_and_leaves_nothing(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_parts(s3, bucket, "big", UNIFORM)
    engine = make_engine(SETTINGS, endpoint=fault_proxy.url)
    fault_proxy.add_rule("delay", method="GET", times=None, delay_s=0.2)
    seen: list[int] = []

    def interrupt(done: int, total: int | None) -> None:
        seen.append(done)
        raise KeyboardInterrupt

    target = tmp_path / "big"
    with pytest.raises(KeyboardInterrupt):
        engine.download_file(bucket, "big", target, progress=interrupt)
    assert seen and seen[0] < sum(UNIFORM)
    assert list(tmp_path.iterdir()) == []
    assert len(requests(fault_proxy, "GET")) < len(UNIFORM), "the parts not yet asked for are not fetched"
    assert not [t for t in threading.enumerate() if t.name.startswith("s3po-get")], "no fetching thread is left"


def test_an_object_replaced_during_a_download_written_at_offsets_is_not_stitched(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    put_parts(s3, bucket, "v", UNIFORM)
    engine = make_engine(SETTINGS, endpoint=fault_proxy.url)
    replaced: list[bytes] = []

    def replace_once(done: int, total: int | None) -> None:
        if done and not replaced:
            replaced.append(put_parts(s3, bucket, "v", UNIFORM))

    target = tmp_path / "v"
    with pytest.raises(DownloadError, match="PreconditionFailed"):
        engine.download_file(bucket, "v", target, progress=replace_once, retries=0)
    assert list(tmp_path.iterdir()) == []
    engine.download_file(bucket, "v", target, retries=1)
    assert target.read_bytes() == replaced[0]


def test_ctrl_c_mid_download_written_at_offsets_leaves_no_partial_file(
    cli_env: dict[str, str], s3: Any, bucket: str, fault_proxy: Any, tmp_path: Path
) -> None:
    put_parts(s3, bucket, "large.bin", [8 * MiB] * 6)
    fault_proxy.add_rule("delay", method="GET", path="large.bin", times=None, delay_s=0.5)
    env = {**cli_env, "S3PO_ENDPOINT_URL": fault_proxy.url}
    target = tmp_path / "out"
    target.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "s3po_client.cli", "download", f"s3://{bucket}/large.bin", str(target / "large.bin")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: any(target.iterdir()), timeout_s=60, message="the download's temporary file")
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert list(target.iterdir()) == [], "the partial download is removed"


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_downloads_is_a_setting_and_either_way_the_file_is_whole(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, tmp_path: Path, fsync: bool
) -> None:
    data = put_parts(s3, bucket, "k", [PART, MiB])
    engine = make_engine(TransferSettings(part_size_bytes=PART, fsync_downloads=fsync))
    assert engine.download_file(bucket, "k", tmp_path / "k") == str(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


class _Pipe:
    """A write-only, non-seekable sink (a pipe, a socket)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def seekable(self) -> bool:
        return False


# -- what a download verifies, said in its result ----------------------------------------

#: SSE-KMS as the store would say it: then the ETag is no MD5 of the bytes
KMS = [(rb"(?i)(\r\netag:)", rb"\r\nx-amz-server-side-encryption: aws:kms\1")]


@pytest.mark.parametrize(
    ("size", "crc32_verified", "etag_verified"),
    [(MiB, "crc32", "md5"), (3 * PART + 11, "crc32-composite", "md5-composite")],
    ids=["single", "multipart"],
)
@pytest.mark.parametrize("how", ["file", "fileobj"])
def test_a_stored_crc32_is_checked_before_the_etag_and_the_result_says_which(
    make_engine: Callable[..., TransferEngine],
    s3_server: Any,
    bucket: str,
    tmp_path: Path,
    size: int,
    crc32_verified: str,
    etag_verified: str,
    how: str,
) -> None:
    from servers import rewriting_proxy

    data = os.urandom(size)
    assert make_engine(SETTINGS).upload_bytes(bucket, "crc", data) is not False  # CRC32 stored, the default
    assert make_engine(replace(SETTINGS, checksum="md5")).upload_bytes(bucket, "md5", data) is not False  # no CRC32

    def get(engine: TransferEngine, key: str) -> Any:
        if how == "file":
            result = engine.get_file(bucket, key, tmp_path / key)
            assert (tmp_path / key).read_bytes() == data and result.path == str(tmp_path / key)
            return result
        with open(tmp_path / f"{key}-obj", "w+b") as f:
            result = engine.get_fileobj(bucket, key, f)
            f.seek(0)
            assert f.read() == data
        return result

    result = get(make_engine(SETTINGS), "crc")
    assert (result.verified, result.bytes_stored, result.bytes_written) == (crc32_verified, size, size)
    assert get(make_engine(SETTINGS), "md5").verified == etag_verified
    with rewriting_proxy(s3_server.port, KMS) as proxy:  # the ETag is no MD5: the CRC32 still checks every byte
        engine = make_engine(SETTINGS, endpoint=proxy.url)
        assert get(engine, "crc").verified == crc32_verified
        rule = proxy.add_rule("corrupt", method="GET", times=None)  # a byte damaged on the way
        with pytest.raises(VerificationError, match="CRC32"):
            get(engine, "crc")
        assert rule.hits >= 1


def test_download_json_says_what_was_verified(cli_env: dict[str, str], s3: Any, bucket: str, tmp_path: Path) -> None:
    from test_cli_transfer import records, s3po

    s3.put_object(Bucket=bucket, Key="v/one.txt", Body=b"hello")
    out = s3po("download", "--json", f"s3://{bucket}/v/one.txt", str(tmp_path), env=cli_env)
    assert out.returncode == 0, out.stderr
    [row] = records(out)
    assert row["verified"] == "crc32" and row["status"] == "downloaded"  # boto3 stores a CRC32


@pytest.mark.parametrize("size", [MiB, 3 * PART + 11], ids=["single", "multipart"])
def test_a_damaged_byte_of_an_object_whose_etag_is_no_md5_is_caught(
    make_engine: Callable[..., TransferEngine], s3_server: Any, bucket: str, size: int
) -> None:
    from servers import rewriting_proxy

    assert make_engine(SETTINGS).upload_bytes(bucket, "kms", os.urandom(size)) is not False
    with rewriting_proxy(s3_server.port, KMS) as proxy:
        proxy.add_rule("corrupt", method="GET", times=None)
        with pytest.raises(VerificationError):
            make_engine(SETTINGS, endpoint=proxy.url).download_bytes(bucket, "kms")


@pytest.mark.parametrize(
    "sizes", [UNIFORM, FITS_ONE_SIZE, DOES_NOT_FIT], ids=["uniform", "fits-one-size", "does-not-fit"]
)
@pytest.mark.parametrize("how", ["file", "bytes"])
def test_a_composite_crc32_is_checked_part_by_part_whatever_the_part_sizes(
    make_engine: Callable[..., TransferEngine], s3_server: Any, bucket: str, tmp_path: Path, sizes: list[int], how: str
) -> None:
    import base64
    import zlib

    from servers import rewriting_proxy

    s3 = s3_server.client()
    chunks = [os.urandom(size) for size in sizes]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="odd", ChecksumAlgorithm="CRC32")["UploadId"]
    done = []
    for number, chunk in enumerate(chunks, 1):
        crc = base64.b64encode(zlib.crc32(chunk).to_bytes(4, "big")).decode()
        answer = s3.upload_part(
            Bucket=bucket, Key="odd", UploadId=upload, PartNumber=number, Body=chunk, ChecksumCRC32=crc
        )
        done.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": crc})
    s3.complete_multipart_upload(Bucket=bucket, Key="odd", UploadId=upload, MultipartUpload={"Parts": done})
    with rewriting_proxy(s3_server.port, KMS) as proxy:
        engine = make_engine(SETTINGS, endpoint=proxy.url)
        if how == "file":
            result = engine.get_file(bucket, "odd", tmp_path / "odd")
            assert (tmp_path / "odd").read_bytes() == b"".join(chunks)
        else:
            with open(tmp_path / "odd-obj", "w+b") as f:
                result = engine.get_fileobj(bucket, "odd", f)
                f.seek(0)
                assert f.read() == b"".join(chunks)
    assert result.verified == "crc32-composite"
