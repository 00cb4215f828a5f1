"""The lean single PUT (``s3po_client/transfer/lean.py``) against a real SeaweedFS."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from s3po_client.transfer import TransferEngine
from s3po_client.transfer.lean import ONE_WRITE_MAX_BYTES


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
