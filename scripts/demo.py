"""`make demo`: the main job end to end on loopback.

Starts a redis-server and an S3-compatible server (SeaweedFS) on free loopback ports,
runs s3pod, enqueues a few files, prints what landed in the bucket, stops everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import RedisServer, S3Server, stop_process  # noqa: E402

import s3po_client  # noqa: E402
from s3po_client.admin import count_jobs  # noqa: E402
from s3po_client.redis_url import connect  # noqa: E402


def main() -> int:
    print("starting redis-server and an S3 server (SeaweedFS) on loopback …")
    redis_server = RedisServer().start()
    s3_server = S3Server().start()
    spool = Path(tempfile.mkdtemp(prefix="s3po-demo-spool-"))
    daemon = None
    try:
        s3 = s3_server.client()
        s3.create_bucket(Bucket="demo")
        env = {
            **os.environ,
            **s3_server.daemon_env(),
            "S3POD_REDIS_URL": redis_server.url,
            "S3POD_ALLOW_DIR": str(spool),
            "PYTHONPATH": str(ROOT),
        }
        daemon = subprocess.Popen([sys.executable, "-m", "s3pod", "--concurrency", "2"], env=env)
        print(f"s3pod running (pid {daemon.pid}); redis {redis_server.url}, S3 {s3_server.url}")

        (spool / "report.csv").write_text("day,uploads\n" + "".join(f"{d},{d * 7}\n" for d in range(1, 2000)))
        (spool / "notes.txt").write_text("kept locally: delete=False\n")
        (spool / "page.html").write_text("<h1>hello from s3po</h1>\n")
        url = redis_server.url
        s3po_client.enqueue("demo", "reports/report.csv.gz", spool / "report.csv", compress="gzip", redis_url=url)
        s3po_client.enqueue("demo", "notes.txt", spool / "notes.txt", delete=False, redis_url=url)
        s3po_client.enqueue(
            "demo",
            "site/index.html",
            spool / "page.html",
            redis_url=url,
            headers={"Content-Type": "text/html", "Cache-Control": "max-age=300"},
        )
        print("enqueued 3 jobs")

        client = connect(url)
        deadline = time.monotonic() + 60
        while True:
            counts = count_jobs(client)
            if counts.pending == counts.processing == counts.delayed == 0 and not (spool / "page.html").exists():
                break
            if time.monotonic() > deadline:
                print(f"jobs not done after 60 s: {counts.to_dict()}")
                return 1
            time.sleep(0.1)

        print("\nobjects in s3://demo:")
        for obj in s3.list_objects_v2(Bucket="demo").get("Contents", []):
            head = s3.head_object(Bucket="demo", Key=obj["Key"])
            print(
                f"  {obj['Key']:<24} {obj['Size']:>7} bytes  type={head.get('ContentType', '-')}"
                f"  encoding={head.get('ContentEncoding', '-')}"
            )
        print(f"\nleft in the spool directory: {sorted(p.name for p in spool.iterdir())}")
        print(f"dead jobs: {counts.dead}")
        return 0 if counts.dead == 0 else 1
    finally:
        stop_process(daemon)
        s3_server.close()
        redis_server.close()
        for p in spool.glob("*"):
            p.unlink()
        spool.rmdir()
        print("stopped s3pod, the S3 server and redis-server")


if __name__ == "__main__":
    sys.exit(main())
