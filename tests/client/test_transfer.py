"""The transfer engine against the real loopback S3 server: round trips, headers, downloads."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3po_client.errors import DownloadError, JobError, UploadError
from s3po_client.retry import RetryPolicy
from s3po_client.settings import MiB, S3Settings, TransferSettings
from s3po_client.transfer import TransferEngine

# Small sizes keep the suite quick: multipart from 6 MiB, parts of 5 MiB (S3's minimum).
THRESHOLD = 6 * MiB
PART = 5 * MiB
SMALL = TransferSettings(multipart_threshold_bytes=THRESHOLD, part_size_bytes=PART, max_concurrency=3)
FAST_RETRY = RetryPolicy(base_s=0.01)

SIZES = [0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 2 * PART, 3 * PART]
CODECS = [None, "gzip", "zlib", "zstd"]
ENCODING = {None: None, "gzip": "gzip", "zlib": "deflate", "zstd": "zstd"}


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes, half random and half repeated text, so codecs have work to do."""
    block = os.urandom(2048) + (b"s3po %d line of text\n" % seed) * 100
    data = block * (size // len(block) + 1)
    return data[:size]


@pytest.fixture
def make_engine(s3_settings: S3Settings) -> Iterator[Callable[..., TransferEngine]]:
    """Factory: ``make_engine(settings=..., endpoint=...)`` builds an engine closed after the test."""
    engines: list[TransferEngine] = []

    def make(
        settings: TransferSettings = SMALL, endpoint: str | None = None, retry: RetryPolicy = FAST_RETRY
    ) -> TransferEngine:
        s3 = (
            s3_settings
            if endpoint is None
            else S3Settings(
                access_id=s3_settings.access_id,
                secret_key=s3_settings.secret_key,
                region=s3_settings.region,
                endpoint_url=endpoint,
            )
        )
        engine = TransferEngine(s3, settings, retry)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., TransferEngine]) -> TransferEngine:
    return make_engine()


def no_uploads_left(s3: Any, bucket: str) -> bool:
    return not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_sizes_round_trip_byte_for_byte(engine: TransferEngine, s3: Any, bucket: str, codec: str | None) -> None:
    for size in SIZES:
        data = pattern(size, size)
        key = f"sizes/{size}.txt"
        result = engine.upload_bytes(bucket, key, data, compress=codec)
        assert result is not False
        assert result.bytes_read == size
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentLength"] == result.bytes_sent
        assert head.get("ContentEncoding") == ENCODING[codec]
        stored = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if codec is None:
            assert stored == data
            # multipart exactly from the threshold on: the ETag says how many parts
            assert ("-" in result.etag) == (size >= THRESHOLD)
        assert engine.download_bytes(bucket, key) == data, (size, codec)
        assert engine.download_bytes(bucket, key, raw=True) == stored


@pytest.mark.parametrize("codec", CODECS)
def test_file_and_fileobj_sources_round_trip(
    engine: TransferEngine, bucket: str, tmp_path: Path, codec: str | None
) -> None:
    data = pattern(2 * PART + 123)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    result = engine.upload_file(bucket, "from-file", str(path), compress=codec)
    assert result is not False and result.source is not None
    assert result.source.size == len(data) and result.source.inode == path.stat().st_ino
    assert engine.download_bytes(bucket, "from-file") == data

    class Pipe(io.RawIOBase):  # a non-seekable stream of unknown length
        def __init__(self, payload: bytes) -> None:
            self.stream = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self.stream.read(min(size, 100_000) if size > 0 else size)

    result = engine.upload_fileobj(bucket, "from-pipe", Pipe(data), compress=codec)
    assert result is not False and result.bytes_read == len(data) and result.source is None
    out = tmp_path / "deep" / "er" / "copy.bin"
    assert engine.download_file(bucket, "from-pipe", str(out)) == str(out)
    assert out.read_bytes() == data


def test_str_is_stored_as_utf8(engine: TransferEngine, s3: Any, bucket: str) -> None:
    engine.upload_bytes(bucket, "note.txt", "héllo ✓")
    assert s3.get_object(Bucket=bucket, Key="note.txt")["Body"].read() == "héllo ✓".encode()


def test_large_file_round_trip(make_engine: Callable[..., TransferEngine], bucket: str, tmp_path: Path) -> None:
    """≥ 100 MiB through the default settings: 8 MiB parts in parallel, ranged GETs back."""
    engine = make_engine(TransferSettings())
    size = 100 * MiB + 12345
    block = os.urandom(MiB)
    source = tmp_path / "big.bin"
    digest = hashlib.md5()
    with open(source, "wb") as f:
        for i in range(size // MiB):
            chunk = block[i % 7 :] + block[: i % 7]
            f.write(chunk)
            digest.update(chunk)
        tail = os.urandom(size % MiB)
        f.write(tail)
        digest.update(tail)
    seen: list[tuple[int, int | None]] = []
    result = engine.upload_file(bucket, "big.bin", str(source), progress=lambda done, total: seen.append((done, total)))
    assert result is not False and result.bytes_sent == size
    assert result.etag.endswith("-13")  # 100 MiB in 8 MiB parts
    assert seen[-1] == (size, size) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    source.unlink()
    target = tmp_path / "back.bin"
    engine.download_file(bucket, "big.bin", str(target))
    back = hashlib.md5()
    with open(target, "rb") as f:
        while chunk := f.read(MiB):
            back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()
    assert target.stat().st_size == size


# -- headers -------------------------------------------------------------------------


def test_headers_are_visible_on_head(engine: TransferEngine, s3: Any, bucket: str) -> None:
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Cache-Control": "max-age=3600",
        "Content-Disposition": 'attachment; filename="r.csv"',
        "Content-Language": "fr",
        "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
        "x-amz-meta-owner": "ops",
        "X-Amz-Meta-Run": "42",
        "x-amz-storage-class": "STANDARD",
        "x-amz-tagging": "team=data&tier=hot",
        "x-amz-acl": "private",
    }
    for size in (10, THRESHOLD + 1):  # single PUT and multipart carry the same settings
        key = f"report-{size}.csv"
        engine.upload_bytes(bucket, key, pattern(size), headers=headers, compress="gzip")
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "text/csv; charset=utf-8"
        assert head["CacheControl"] == "max-age=3600"
        assert head["ContentDisposition"] == 'attachment; filename="r.csv"'
        assert head["ContentLanguage"] == "fr"
        assert head["ContentEncoding"] == "gzip"
        assert head["ExpiresString"] == "Wed, 21 Oct 2037 07:28:00 GMT"
        assert head["Metadata"] == {"owner": "ops", "run": "42"}
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {"team": "data", "tier": "hot"}


def test_content_type_is_guessed_from_the_name(engine: TransferEngine, s3: Any, bucket: str, tmp_path: Path) -> None:
    engine.upload_bytes(bucket, "page.html", b"<p>")
    engine.upload_bytes(bucket, "archive.tar.gz", b"\x1f\x8b")
    path = tmp_path / "data.json"
    path.write_text("{}")
    engine.upload_file(bucket, "upload-without-extension", str(path))
    assert s3.head_object(Bucket=bucket, Key="page.html")["ContentType"] == "text/html"
    # a .gz name is an archive, not a Content-Encoding a browser would undo
    head = s3.head_object(Bucket=bucket, Key="archive.tar.gz")
    assert head["ContentType"] == "application/gzip" and "ContentEncoding" not in head
    # compressed by s3po: the type is what a client gets once it undoes Content-Encoding
    csv = tmp_path / "report.csv"
    csv.write_text("a,b\n1,2\n")
    engine.upload_file(bucket, "reports/report.csv.gz", str(csv), compress="gzip")
    engine.upload_file(bucket, "reports/report.csv.zst", str(csv), compress="zstd")
    for key, encoding in (("reports/report.csv.gz", "gzip"), ("reports/report.csv.zst", "zstd")):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ContentType"], head["ContentEncoding"]) == ("text/csv", encoding)


def test_an_unmappable_header_fails_before_any_byte_is_sent(
    make_engine: Callable[..., TransferEngine], fault_proxy: Any, bucket: str
) -> None:
    engine = make_engine(endpoint=fault_proxy.url)
    for headers in ({"X-Custom": "1"}, {"Content-Encoding": "br"}, {"Authorization": "x"}):
        with pytest.raises(JobError, match="header"):
            engine.upload_bytes(bucket, "k", b"data", headers=headers, compress="gzip", retries=3)
    assert fault_proxy.requests == []
    assert engine.upload_bytes(bucket, "k", b"data", headers={"X-Custom": "1"}, silent=True) is False
    assert fault_proxy.requests == []


# -- downloads -----------------------------------------------------------------------


def test_download_decodes_unless_raw(engine: TransferEngine, s3: Any, bucket: str, tmp_path: Path) -> None:
    import gzip
    import zlib

    text = b"hello, " * 5000
    s3.put_object(Bucket=bucket, Key="g", Body=gzip.compress(text), ContentEncoding="gzip")
    s3.put_object(Bucket=bucket, Key="raw-deflate", Body=zlib.compress(text)[2:-4], ContentEncoding="deflate")
    s3.put_object(
        Bucket=bucket, Key="two-members", Body=gzip.compress(text) + gzip.compress(b"!"), ContentEncoding="gzip"
    )
    s3.put_object(Bucket=bucket, Key="identity", Body=text)
    assert engine.download_bytes(bucket, "g") == text
    assert (
        engine.download_bytes(bucket, "g", raw=True) == gzip.compress(text, mtime=0)
        or gzip.decompress(engine.download_bytes(bucket, "g", raw=True)) == text
    )
    assert engine.download_bytes(bucket, "raw-deflate") == text
    assert engine.download_bytes(bucket, "two-members") == text + b"!"
    out = io.BytesIO()
    assert engine.download_fileobj(bucket, "identity", out) == len(text)
    assert out.getvalue() == text


def test_undecodable_object_fails_and_leaves_no_file(
    engine: TransferEngine, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="bad", Body=b"this is not gzip", ContentEncoding="gzip")
    target = tmp_path / "out.txt"
    with pytest.raises(DownloadError, match="cannot decode") as info:
        engine.download_file(bucket, "bad", str(target), retries=2)
    assert info.value.transient is False
    assert list(tmp_path.iterdir()) == []
    assert engine.download_file(bucket, "bad", str(target), raw=True) == str(target)
    assert target.read_bytes() == b"this is not gzip"


def test_download_replaces_the_target_atomically(engine: TransferEngine, bucket: str, tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")
    with pytest.raises(DownloadError, match="no such object") as info:
        engine.download_file(bucket, "missing", str(target), retries=3)
    assert info.value.transient is False and info.value.bucket == bucket and info.value.key == "missing"
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    engine.upload_bytes(bucket, "new", b"new")
    engine.download_file(bucket, "new", target)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_permanent_errors_name_bucket_key_and_cause(engine: TransferEngine, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(UploadError, match=r"s3://no-such-bucket-s3po/k: NoSuchBucket") as info:
        engine.upload_bytes("no-such-bucket-s3po", "k", b"x", retries=5)
    assert info.value.transient is False and info.value.attempt == 0
    with pytest.raises(UploadError, match="does not exist") as info:
        engine.upload_file(bucket, "k", str(tmp_path / "missing"), retries=5)
    assert info.value.transient is False


def test_crc32_checksum_mode_round_trips(make_engine: Callable[..., TransferEngine], s3: Any, bucket: str) -> None:
    engine = make_engine(TransferSettings(multipart_threshold_bytes=THRESHOLD, part_size_bytes=PART, checksum="crc32"))
    for size in (100, 2 * PART + 1):
        data = pattern(size)
        result = engine.upload_bytes(bucket, f"crc-{size}", data, compress="zstd")
        assert result is not False
        assert engine.download_bytes(bucket, f"crc-{size}") == data


@pytest.mark.parametrize("sign_payload", [False, True])
def test_bodies_are_signed_only_when_asked_and_the_store_takes_both(
    make_engine: Callable[..., TransferEngine],
    s3: Any,
    bucket: str,
    sign_payload: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    engine = make_engine(replace(SMALL, sign_payload=sign_payload))
    sent: list[str] = []
    engine.client.meta.events.register(
        "before-send.s3.*", lambda request, **_: sent.append(request.headers.get("X-Amz-Content-SHA256", b""))
    )
    # The lean PUT (single PUTs and parts) builds its requests itself: read from the wire.
    heads: list[bytes] = []
    sendall = socket.socket.sendall

    def seen(self: socket.socket, block: Any, *args: Any) -> Any:
        if bytes(block[:4]) == b"PUT ":
            heads.append(bytes(block[:8192]))
        return sendall(self, block, *args)

    monkeypatch.setattr(socket.socket, "sendall", seen)
    data = pattern(2 * PART + 1)  # multipart: every part, and the single PUT below
    engine.upload_bytes(bucket, "signed", data)
    engine.upload_bytes(bucket, "small", b"tiny")
    monkeypatch.undo()
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data
    parts = [h for h in heads if b"partNumber=" in h.split(b"\r\n", 1)[0]]
    assert len(parts) == 3 and len(heads) == 4
    for head in heads:
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-amz-content-sha256":
                sent.append(value.strip().decode())
    bodies = [v.decode() if isinstance(v, bytes) else v for v in sent]
    unsigned = [v == "UNSIGNED-PAYLOAD" for v in bodies if v]
    assert unsigned and all(unsigned) is (not sign_payload) and any(unsigned) is (not sign_payload), bodies


@pytest.mark.parametrize(
    "how", [{}, {"lean_put": False}, {"lean_put": False, "sign_payload": True}], ids=["lean", "boto3", "signed"]
)
def test_parts_read_into_reused_buffers_are_stored_whole_each_way(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, tmp_path: Path, how: dict[str, bool]
) -> None:
    """Parts in lent buffers, sent by the lean PUT or by boto3 (from a file reading the buffer), each byte counted once."""
    from dataclasses import replace

    engine = make_engine(replace(SMALL, **how))
    data = pattern(7 * PART + 4321)  # more parts than buffers: each buffer is lent again
    path = tmp_path / "parts.bin"
    path.write_bytes(data)
    result = engine.upload_file(bucket, "parts", path)
    assert result is not False and result.bytes_sent == len(data)
    assert s3.get_object(Bucket=bucket, Key="parts")["Body"].read() == data
    assert engine.limiter.up.bytes_total == len(data)


def test_the_lean_put_stores_what_boto3_stores_and_fails_the_same_way(
    make_engine: Callable[..., TransferEngine], s3: Any, bucket: str, fault_proxy: Any
) -> None:
    from dataclasses import replace

    headers = {
        "Content-Type": "text/csv",
        "Cache-Control": "max-age=60",
        "Content-Disposition": "inline",
        "Content-Language": "fr",
        "x-amz-meta-owner": "ops",
        "Expires": "Thu, 01 Dec 2094 16:00:00 GMT",
    }
    lean, boto = make_engine(SMALL), make_engine(replace(SMALL, lean_put=False))
    sent: list[str] = []
    for engine in (lean, boto):
        engine.client.meta.events.register("before-send.s3.PutObject", lambda request, **_: sent.append("boto3"))
    for name, engine in (("lean", lean), ("boto", boto)):
        for key, extra in (
            (f"{name}-plain", {k: v for k, v in headers.items() if k != "Expires"}),
            (f"{name}-expires", headers),
        ):
            engine.upload_bytes(bucket, key, b"a,b\n1,2\n", headers=extra, compress="gzip")
    # Only the boto3 engine, and the header the lean path leaves to boto3 (a date), go through boto3.
    assert sent == ["boto3", "boto3", "boto3"]
    fields = (
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentLanguage",
        "ContentEncoding",
        "Metadata",
        "ETag",
        "ContentLength",
    )
    for suffix in ("plain", "expires"):
        a = s3.head_object(Bucket=bucket, Key=f"lean-{suffix}")
        b = s3.head_object(Bucket=bucket, Key=f"boto-{suffix}")
        assert {f: a.get(f) for f in fields} == {f: b.get(f) for f in fields}
    assert s3.get_object(Bucket=bucket, Key="lean-plain")["ContentEncoding"] == "gzip"
    with pytest.raises(UploadError, match="NoSuchBucket") as info:
        lean.upload_bytes("no-such-bucket-s3po", "k", b"x", retries=3)
    assert info.value.transient is False
    flaky = make_engine(SMALL, endpoint=fault_proxy.url)
    rule = fault_proxy.add_rule("error", method="PUT", status=503, code="SlowDown", times=2)
    flaky.upload_bytes(bucket, "after-503", b"retried")  # each request is retried alone
    assert rule.hits == 2 and s3.get_object(Bucket=bucket, Key="after-503")["Body"].read() == b"retried"


# -- what is stored, through the engine's own methods ---------------------------------


def test_listing_and_head_go_through_the_engine(engine: TransferEngine, s3: Any, bucket: str) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"list/{i}.txt", Body=b"x" * (i + 1))
    s3.put_object(Bucket=bucket, Key="other", Body=b"y")
    listed = list(engine.list_objects(bucket, "list/"))
    assert [(o.key, o.size) for o in listed] == [("list/0.txt", 1), ("list/1.txt", 2), ("list/2.txt", 3)]
    assert listed[0].etag == s3.head_object(Bucket=bucket, Key="list/0.txt")["ETag"].strip('"')
    assert bucket in [b.name for b in engine.list_buckets()]
    info = engine.head(bucket, "list/2.txt")
    assert (info.size, info.etag.strip('"')) == (3, listed[2].etag)
    with pytest.raises(DownloadError, match="no such object") as missing:
        engine.head(bucket, "list/none")
    assert missing.value.transient is False
    with pytest.raises(DownloadError, match="NoSuchBucket"):
        list(engine.list_objects("no-such-bucket-s3po", ""))


def test_abandon_upload_aborts_what_the_record_names_and_forgets_it(
    engine: TransferEngine, s3: Any, bucket: str
) -> None:
    from s3po_client.transfer.state import SavedUpload

    engine.warm_up()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="left")["UploadId"]

    class Kept:
        saved: SavedUpload | None = SavedUpload(upload_id, bucket, "left", PART, None, None, False)

        def load(self) -> SavedUpload | None:
            return self.saved

        def save(self, saved: SavedUpload) -> None:
            self.saved = saved

        def clear(self) -> None:
            self.saved = None

    state = Kept()
    assert engine.abandon_upload(state) is True
    assert state.saved is None and no_uploads_left(s3, bucket)
    assert engine.abandon_upload(state) is False
