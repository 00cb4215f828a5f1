"""A 1 GiB file, gzip-compressed on the way up and decoded on the way down, in bounded memory.

The transfer runs in a child process that reports its own peak RSS (``ru_maxrss``), so
nothing else in the test process counts against the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from s3po_client.settings import MiB, S3Settings

GiB = 1024 * MiB

#: The stated bound (measured: 170–220 MiB on 2 cores, with glibc told to mmap large buffers): the interpreter with boto3 (~60 MiB), the first
#: multipart_threshold (16 MiB), (max_concurrency + 1) × part size (40 MiB) of parts in
#: flight, and a copy of each while it is sent; well under a tenth of the file.
PEAK_RSS_BOUND_BYTES = 320 * MiB

CHILD = r"""
import hashlib, json, resource, sys
from s3po_client.settings import S3Settings
from s3po_client.transfer import TransferEngine

args = json.loads(sys.argv[1])
engine = TransferEngine(S3Settings(**args["s3"]))
result = engine.upload_file(args["bucket"], "big.log.gz", args["path"], compress="gzip")
upload_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

class Hashing:
    def __init__(self):
        self.md5 = hashlib.md5()
    def write(self, data):
        self.md5.update(data)
        return len(data)

sink = Hashing()
count = engine.download_fileobj(args["bucket"], "big.log.gz", sink)
print(json.dumps({
    "bytes_read": result.bytes_read, "bytes_sent": result.bytes_sent, "etag": result.etag,
    "decoded": count, "md5": sink.md5.hexdigest(),
    "upload_peak_rss_bytes": upload_peak, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def test_1_gib_compressed_upload_and_download_in_bounded_memory(s3_settings: S3Settings, s3: Any, bucket: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    # Compressible but not trivial: 64 KiB of random bytes then 192 KiB of repeated text.
    digest = __import__("hashlib").md5()
    with open(path, "wb") as f:
        text = (b"2024-06-01T00:00:00Z INFO request served path=/srv/app/x took=1.00ms\n" * 3000)[:192 * 1024]
        for _ in range(GiB // (256 * 1024)):
            block = os.urandom(64 * 1024) + text
            f.write(block)
            digest.update(block)
    args = {"s3": {"access_id": s3_settings.access_id, "secret_key": s3_settings.secret_key,
                   "region": s3_settings.region, "endpoint_url": s3_settings.endpoint_url},
            "bucket": bucket, "path": str(path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["bytes_read"] == GiB
    assert report["decoded"] == GiB and report["md5"] == digest.hexdigest()
    head = s3.head_object(Bucket=bucket, Key="big.log.gz")
    assert head["ContentEncoding"] == "gzip" and head["ContentLength"] == report["bytes_sent"] < GiB // 2
    assert "-" in report["etag"]  # went multipart without knowing the compressed length
    assert report["peak_rss_bytes"] < PEAK_RSS_BOUND_BYTES, (
        f"peak RSS {report['peak_rss_bytes'] / MiB:.0f} MiB (upload {report['upload_peak_rss_bytes'] / MiB:.0f} MiB)")
