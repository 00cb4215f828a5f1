"""Where a job's multipart upload is recorded (``<prefix>:upload:<job id>``), against a real redis-server."""

from __future__ import annotations

import pytest

from s3po_client.keys import QueueKeys
from s3po_client.localfile import FileStat
from s3po_client.transfer.state import SavedUpload
from s3pod.uploads import JobUploads, SmallFileUploads

KEYS = QueueKeys("s3po")


def saved(upload_id: str) -> SavedUpload:
    return SavedUpload(upload_id, "b", "k", 8 * 1024 * 1024, FileStat(10, 1, 2, 3), None, False, 1.0)


def test_a_small_file_reads_no_record_but_never_overwrites_one(redis_client) -> None:
    JobUploads(redis_client, KEYS, "j1").save(saved("earlier"))
    small = SmallFileUploads(redis_client, KEYS, "j1")
    assert small.load() is None, "no round trip: the ack reports a record left, for the worker to abort"
    # The file grew past the threshold while it was read: the new upload must not hide the earlier one.
    with pytest.raises(RuntimeError, match="earlier run"):
        small.save(saved(""))
    assert JobUploads(redis_client, KEYS, "j1").load() == saved("earlier")


def test_a_small_file_that_grew_records_its_multipart_upload_as_usual(redis_client) -> None:
    small = SmallFileUploads(redis_client, KEYS, "j2")
    small.save(saved(""))  # about to be created
    small.save(saved("u-1"))  # created: the id is known
    assert JobUploads(redis_client, KEYS, "j2").load() == saved("u-1")
    assert redis_client.ttl(KEYS.upload("j2")) > 0
    small.clear()
    assert not redis_client.exists(KEYS.upload("j2"))
