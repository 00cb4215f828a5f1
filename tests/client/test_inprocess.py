"""``runLoop()``'s background threads: what they keep of the uploads that failed.

Real S3 server behind the fault proxy (which refuses every PUT), real files, RSS read with psutil
in a subprocess of its own so the figures are not the test runner's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from faultproxy import FaultProxy
from servers import REGION

from s3po_client import Connection
from s3po_client.inprocess import MAX_FAILURES_KEPT

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

#: The subprocess: FAILS uploads of a 12 MiB file, all refused by the store; prints the RSS
#: growth (MiB) from after a first failure (boto3 and its pools in place) to after the rest.
RSS_SCRIPT = """
import gc, json, os, sys
import psutil
from s3po_client import Connection

endpoint, access, secret, region, bucket, path, fails = sys.argv[1:8]
conn = Connection(access, secret, endpoint_url=endpoint, region=region, delete=False, backoff_base=0.01)
conn.runLoop(threads=2)
conn.uploadFile(bucket, "first", path, retries=0)
assert conn.wait(120)
gc.collect()
before = psutil.Process().memory_info().rss
for n in range(int(fails)):
    conn.uploadFile(bucket, f"key-{n}", path, retries=0)
assert conn.wait(300)
gc.collect()
after = psutil.Process().memory_info().rss
failures = conn.failures()
print(json.dumps({"growth_mib": (after - before) / 2**20, "failures": len(failures),
                  "error": str(failures[-1].error), "type": type(failures[-1].error).__name__}))
conn.close()
"""


def test_failed_uploads_do_not_hold_their_file_contents(s3_server, bucket, tmp_path: Path) -> None:
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(12 * MiB))  # below the multipart threshold: one PUT holds it whole
    fails = 20
    with FaultProxy(s3_server.port) as proxy:
        proxy.add_rule("error", method="PUT", status=403, code="AccessDenied", times=None)
        done = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, proxy.url, s3_server.access_key, s3_server.secret_key, REGION]
            + [bucket, str(path), str(fails)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["failures"] == fails + 1 and "AccessDenied" in figures["error"], figures
    # 20 bodies of 12 MiB held by their tracebacks would be 240 MiB; a few buffers may linger in the allocator
    assert figures["growth_mib"] < 60, figures


def test_the_failures_kept_are_bounded_and_carry_no_traceback(s3_server, tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    with Connection(
        s3_server.access_key, s3_server.secret_key, endpoint_url=s3_server.url, region=REGION, backoff_base=0.01
    ) as conn:
        conn.runLoop(threads=2)
        for n in range(MAX_FAILURES_KEPT + 25):
            path.write_bytes(b"x")
            conn.uploadFile("no-such-bucket", f"k{n}", str(path), retries=0)  # checked at submit time
            path.unlink()  # then gone when its upload runs: fails at once, no request sent
        assert conn.wait(120)
        failures = conn.failures()
    assert len(failures) == MAX_FAILURES_KEPT
    kept = {f.key for f in failures}
    assert "k0" not in kept and f"k{MAX_FAILURES_KEPT + 24}" in kept, "the newest are kept"
    assert all(f.error.__traceback__ is None for f in failures)
    assert "does not exist" in str(failures[-1].error)
