"""The direct single PUT (``s3po_client/transfer/direct_put.py``) against a real SeaweedFS."""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import REGION, ConnectProxy, HttpsS3Server
from test_transfer import PART, SMALL, THRESHOLD, pattern

from s3po_client.errors import UploadError
from s3po_client.settings import S3Settings
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.direct_put import ONE_WRITE_MAX_BYTES
from s3pod.reachability import s3_answers


@pytest.mark.parametrize("size", [4096, ONE_WRITE_MAX_BYTES, ONE_WRITE_MAX_BYTES + 1])
def test_a_small_put_leaves_in_one_write_and_is_stored_whole(
    s3_settings: Any, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    engine = TransferEngine(s3_settings)
    try:
        engine.upload_bytes(bucket, "warm", b"w")  # the client, the lean putter and one pooled connection
        writes: list[int] = []
        sendall = socket.socket.sendall

        def counted(self: socket.socket, data: Any, *args: Any) -> Any:
            writes.append(len(data))
            return sendall(self, data, *args)

        monkeypatch.setattr(socket.socket, "sendall", counted)
        body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        engine.upload_bytes(bucket, f"one-{size}", body)
        monkeypatch.undo()
        assert s3.get_object(Bucket=bucket, Key=f"one-{size}")["Body"].read() == body
        if size <= ONE_WRITE_MAX_BYTES:
            assert len(writes) == 1 and writes[0] > size, "headers and body in one write"
        else:
            assert len(writes) == 2 and writes[1] == size, "a larger body follows its headers, as http.client sends it"
    finally:
        engine.close()


def count_writes(monkeypatch: pytest.MonkeyPatch, cls: type[socket.socket]) -> list[int]:
    """Record the length of every ``sendall`` on sockets of ``cls`` from now on."""
    writes: list[int] = []
    sendall = cls.sendall

    def counted(self: socket.socket, data: Any, *args: Any) -> Any:
        writes.append(len(memoryview(data).cast("B")))
        return sendall(self, data, *args)

    monkeypatch.setattr(cls, "sendall", counted)
    return writes


def body_writes(writes: list[int]) -> list[int]:
    """The writes that carry a body (headers and the small XML bodies of create/complete are under 4 KiB), sorted."""
    return sorted(w for w in writes if w > 4096)


def test_each_part_of_a_large_upload_leaves_in_one_write(
    s3_settings: Any, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A part goes in one ``sendall`` from the buffer it was read into (boto3 writes 16 KiB blocks)."""
    engine = TransferEngine(s3_settings, SMALL)
    try:
        engine.upload_bytes(bucket, "warm", b"w")
        data = pattern(3 * PART + 100_000)
        path = tmp_path / "large.bin"
        path.write_bytes(data)
        writes = count_writes(monkeypatch, socket.socket)
        engine.upload_file(bucket, "large", path)
        monkeypatch.undo()
        assert s3.get_object(Bucket=bucket, Key="large")["Body"].read() == data
        assert body_writes(writes) == [100_000, PART, PART, PART]
    finally:
        engine.close()


# -- TLS and proxies: the direct PUT goes where boto3 goes, trusting what boto3 trusts ----------


@pytest.fixture(scope="module")
def https_s3() -> Iterator[HttpsS3Server]:
    server = HttpsS3Server().start()
    yield server
    server.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy, no CA bundle and no bypass list from the environment the tests were started in."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def tls_engine(https_s3: HttpsS3Server, ca_bundle: str | None = None) -> TransferEngine:
    assert https_s3.server is not None
    s3 = S3Settings(
        access_id=https_s3.server.access_key,
        secret_key=https_s3.server.secret_key,
        region=REGION,
        endpoint_url=https_s3.url,
        ca_bundle=ca_bundle,
    )
    return TransferEngine(s3, SMALL)


def tls_bucket(https_s3: HttpsS3Server) -> str:
    assert https_s3.server is not None
    name = f"t-{uuid.uuid4().hex[:20]}"
    https_s3.server.client().create_bucket(Bucket=name)  # over its plain HTTP port
    return name


@pytest.mark.parametrize("size", [1024, THRESHOLD + 1], ids=["small", "multipart"])
def test_a_ca_given_only_by_aws_ca_bundle_is_trusted_by_small_and_large_uploads(
    https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch, size: int
) -> None:
    no_proxy_env.setenv("AWS_CA_BUNDLE", str(https_s3.ca))
    bucket = tls_bucket(https_s3)
    engine = tls_engine(https_s3)
    try:
        data = pattern(size)
        assert engine.upload_bytes(bucket, "over-tls", data, retries=0) is not False
        assert engine.download_bytes(bucket, "over-tls") == data
    finally:
        engine.close()


@pytest.mark.parametrize("size", [1024, THRESHOLD + 1], ids=["small", "multipart"])
def test_a_ca_given_only_by_the_settings_is_trusted_by_small_and_large_uploads(
    https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch, size: int
) -> None:
    """``S3Settings(ca_bundle=...)``, which ``--ca-bundle`` sets for s3po and s3pod."""
    bucket = tls_bucket(https_s3)
    engine = tls_engine(https_s3, ca_bundle=str(https_s3.ca))
    try:
        data = pattern(size)
        assert engine.upload_bytes(bucket, "over-tls", data, retries=0) is not False
        assert engine.download_bytes(bucket, "over-tls") == data
    finally:
        engine.close()


def test_without_the_ca_the_store_is_not_trusted(https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch) -> None:
    engine = tls_engine(https_s3)
    try:
        with pytest.raises(UploadError, match="(?i)certificate"):
            engine.upload_bytes("any-bucket", "k", b"small", retries=0)
    finally:
        engine.close()


@pytest.mark.parametrize("size", [1024, THRESHOLD + 1], ids=["small", "multipart"])
def test_uploads_over_tls_go_through_the_https_proxy(
    https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch, size: int
) -> None:
    no_proxy_env.setenv("AWS_CA_BUNDLE", str(https_s3.ca))
    bucket = tls_bucket(https_s3)
    with ConnectProxy() as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        engine = tls_engine(https_s3)
        try:
            data = pattern(size)
            assert engine.upload_bytes(bucket, "proxied", data, retries=0) is not False
        finally:
            engine.close()
        assert proxy.requests and all(r.startswith(f"CONNECT 127.0.0.1:{https_s3.https_port} ") for r in proxy.requests)
    assert https_s3.server is not None
    assert https_s3.server.client().get_object(Bucket=bucket, Key="proxied")["Body"].read() == data


def test_a_small_upload_over_http_goes_through_the_http_proxy(
    s3_settings: Any, s3: Any, bucket: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        engine = TransferEngine(s3_settings)
        try:
            assert engine.upload_bytes(bucket, "proxied", b"small body", retries=0) is not False
        finally:
            engine.close()
        assert proxy.requests == [f"PUT {s3_settings.endpoint_url}/{bucket}/proxied HTTP/1.1"]
    assert s3.get_object(Bucket=bucket, Key="proxied")["Body"].read() == b"small body"


def test_the_readiness_probe_trusts_the_ca_bundle(https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch) -> None:
    assert s3_answers(https_s3.url) is not None, "the system's CAs do not know this one"
    assert s3_answers(https_s3.url, ca_bundle=str(https_s3.ca)) is None, "the bundle given (--ca-bundle)"
    no_proxy_env.setenv("AWS_CA_BUNDLE", str(https_s3.ca))
    assert s3_answers(https_s3.url) is None


@pytest.mark.parametrize("size", [1024 * 1024, THRESHOLD + 1], ids=["small", "multipart"])
def test_a_limited_upload_over_tls_keeps_to_the_limit(
    https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch, size: int
) -> None:
    """Over TLS the direct PUT goes through botocore's own HTTP session: its body is limited there too."""
    import time

    from s3po_client.transfer.bandwidth import Limiter, parse_bwlimit

    bucket = tls_bucket(https_s3)
    engine = tls_engine(https_s3, ca_bundle=str(https_s3.ca))
    try:
        engine.warm_up()
        engine.limiter = Limiter(parse_bwlimit("4M:off"))
        data = pattern(size)
        started = time.monotonic()
        assert engine.upload_bytes(bucket, "limited", data, retries=0) is not False
        assert time.monotonic() - started >= size / (4 * 1024 * 1024) * 0.9
        assert engine.download_bytes(bucket, "limited") == data
    finally:
        engine.close()


def test_each_part_of_a_large_upload_over_tls_leaves_in_one_write(
    https_s3: HttpsS3Server, no_proxy_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = tls_bucket(https_s3)
    engine = tls_engine(https_s3, ca_bundle=str(https_s3.ca))
    try:
        engine.upload_bytes(bucket, "warm", b"w")
        data = pattern(2 * PART + 100_000)
        path = tmp_path / "large.bin"
        path.write_bytes(data)
        writes = count_writes(no_proxy_env, ssl.SSLSocket)
        engine.upload_file(bucket, "large", path)
        no_proxy_env.undo()
        assert engine.download_bytes(bucket, "large") == data
        assert body_writes(writes) == [100_000, PART, PART]
    finally:
        engine.close()
