"""The "Connection" section of docs/python-api.md runs as written, against the real Redis and S3 servers.

Each ```python block of the section runs in order in one fresh interpreter (a shared
namespace, as a reader would type them), configured only through the environment: AWS
keys, ``AWS_ENDPOINT_URL`` and ``S3PO_REDIS_URL``. Before each block the example files
(foo.txt, bar.txt, yes.txt) are written again, since blocks delete what they upload.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import REGION

from s3po_client import Job

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "my-bucket"


def python_api_blocks() -> list[str]:
    text = (ROOT / "docs" / "python-api.md").read_text()
    match = re.search(r"^## Connection\n(.*?)^## ", text, re.S | re.M)
    assert match, "docs/python-api.md has no '## Connection' section"
    return re.findall(r"^```python\n(.*?)^```", match.group(1), re.S | re.M)


DRIVER = """
import os, sys
blocks = {blocks!r}
namespace = {{"__name__": "__readme__"}}
for i, block in enumerate(blocks):
    for name in ("foo.txt", "bar.txt", "yes.txt"):
        with open(name, "w") as f:
            f.write("content of " + name)
    print(f"--- block {{i}}", flush=True)
    exec(compile(block, f"docs/python-api.md Connection block {{i}}", "exec"), namespace)
print("--- done", flush=True)
"""


@pytest.fixture
def readme_bucket(s3) -> str:
    """The README's bucket, emptied (it is shared by every test of the session)."""
    try:
        s3.create_bucket(Bucket=BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except Exception as exc:  # noqa: BLE001 - SeaweedFS answers BucketAlreadyExists
        if "BucketAlready" not in str(exc):
            raise
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return BUCKET


def test_python_api_section_runs_as_written(s3_server, redis_server, redis_client, s3, readme_bucket, tmp_path) -> None:
    blocks = python_api_blocks()
    assert len(blocks) >= 8, "the walkthrough lost examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3PO_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": s3_server.access_key,
            "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": s3_server.url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "S3PO_REDIS_URL": redis_server.url,
            "PYTHONPATH": str(ROOT),
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", DRIVER.format(blocks=blocks)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("--- done")

    # What the examples did: synchronous uploads stored, asynchronous ones queued for s3pod,
    # those on in-process threads stored.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert {"my-key", "greeting", "foo-key", "bar-key", "yes-key"} <= keys
    last = s3.get_object(Bucket=BUCKET, Key="my-key")
    assert last["ContentEncoding"] == "gzip"
    assert gzip.decompress(last["Body"].read()) == b"content of foo.txt"
    assert s3.get_object(Bucket=BUCKET, Key="foo-key")["Body"].read() == b"content of foo.txt"
    queued = [Job.from_json(raw) for raw in reversed(redis_client.lrange("s3po:queue", 0, -1))]
    assert [(j.key, Path(j.path).name, j.delete, j.retries) for j in queued] == [
        ("my-key", "foo.txt", False, 3),  # Connection(delete=False): kept
        ("my-key", "bar.txt", True, 3),  # ... but delete=True on the call
        ("my-key", "bar.txt", True, 3),  # Connection(async_=False), async_=True on the call
    ]
    assert (tmp_path / "greeting.txt").read_bytes() == b"howdy"
