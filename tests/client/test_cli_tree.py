"""``s3po`` on trees: a directory up, a prefix down, ``ls``, filters, symlinks, a partial failure."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest
from test_cli_transfer import cli_env, err_lines, records, s3po  # noqa: F401 - cli_env is a fixture

from s3po_client import Job

#: prctl(PR_CAPBSET_DROP, cap): take a capability out of what the next exec'd program can have
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def make_tree(root: Path) -> dict[str, bytes]:
    """Write a small tree under ``root``; return its files by relative name."""
    files = {
        "a.txt": b"alpha\n",
        "logs/today.log": b"log line\n" * 1000,
        "logs/old/2023.log": b"old\n",
        "logs/skip.tmp": b"temporary",
        "data/blob.bin": os.urandom(300_000),
        "data/empty": b"",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def stored(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix) :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_tree_up_and_down_again(cli_env, s3, bucket, tmp_path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    out = s3po("upload", "--compress", "gzip", str(src), f"s3://{bucket}/up/", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert files_under(src) == {}, "every file is deleted once its object is verified"
    assert sorted(stored(s3, bucket, "up/")) == sorted(files)

    back = tmp_path / "back"
    out = s3po("download", "--json", f"s3://{bucket}/up/", str(back), env=cli_env)
    assert out.returncode == 0, out.stderr
    assert files_under(back) == files
    rows = records(out)
    assert {r["key"] for r in rows} == {f"up/{name}" for name in files}
    assert all(r["status"] == "downloaded" and r["error"] is None for r in rows)
    assert {r["path"]: r["bytes_read"] for r in rows} == {str(back / n): len(d) for n, d in files.items()}


def test_tree_keep_and_a_target_without_the_slash(cli_env, s3, bucket, tmp_path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    out = s3po("upload", "--keep", "-j", "2", str(src), f"s3://{bucket}/kept", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert files_under(src) == files
    assert stored(s3, bucket, "kept/") == files
    assert f"uploaded {len(files)} of {len(files)} files" in out.stderr.decode()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--exclude", "*.tmp"], {"a.txt", "logs/today.log", "logs/old/2023.log", "data/blob.bin", "data/empty"}),
        (["--exclude", "*", "--include", "*.log"], {"logs/today.log", "logs/old/2023.log"}),
        (["--include", "*.log", "--exclude", "*"], set()),  # the last filter that matches decides
        (
            ["--exclude", "logs/*", "--include", "logs/old/*"],
            {"a.txt", "logs/old/2023.log", "data/blob.bin", "data/empty"},
        ),
    ],
)
def test_exclude_and_include_as_in_the_aws_cli(cli_env, s3, bucket, tmp_path, filters, expected) -> None:
    src = tmp_path / "src"
    make_tree(src)
    out = s3po("upload", "--keep", *filters, str(src), f"s3://{bucket}/f/", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert set(stored(s3, bucket, "f/")) == expected


def test_symlinks_are_left_alone_unless_followed_and_never_deleted(cli_env, s3, bucket, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("behind a link")
    (outside / "inner.txt").write_text("in a linked directory")
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.txt").write_text("real")
    (src / "link.txt").symlink_to(outside / "target.txt")
    (src / "linkdir").symlink_to(outside)
    (src / "loop").symlink_to(src)  # a loop: followed once, never forever

    out = s3po("upload", "--keep", "--json", str(src), f"s3://{bucket}/plain/", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert set(stored(s3, bucket, "plain/")) == {"real.txt"}
    skipped = {r["key"] for r in records(out) if r["status"] == "skipped"}
    assert skipped == {"plain/link.txt", "plain/linkdir", "plain/loop"}

    out = s3po("upload", "--follow-symlinks", str(src), f"s3://{bucket}/followed/", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert stored(s3, bucket, "followed/") == {
        "real.txt": b"real",
        "link.txt": b"behind a link",
        "linkdir/target.txt": b"behind a link",
        "linkdir/inner.txt": b"in a linked directory",
    }
    assert not (src / "real.txt").exists(), "a file read by its own name is deleted"
    assert (src / "link.txt").is_symlink() and (outside / "target.txt").read_text() == "behind a link"
    assert (outside / "inner.txt").exists(), "a file reached through a linked directory is kept"


def drop_file_access_override() -> None:
    """In the child: root loses the power to read files whose mode says no (as any other user has)."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_one_unreadable_file_fails_alone(cli_env, s3, bucket, tmp_path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    locked = src / "logs" / "locked.log"
    locked.write_text("secret")
    locked.chmod(0)
    out = s3po("upload", "--json", str(src), f"s3://{bucket}/p/", env=cli_env, preexec_fn=drop_file_access_override)
    assert out.returncode == 1, out.stderr
    assert stored(s3, bucket, "p/") == files, "every other file is stored"
    assert files_under_names(src) == {"logs/locked.log"}, "the others deleted, the unreadable one kept"
    [failed] = [r for r in records(out) if r["error"] is not None]
    assert failed["key"] == "p/logs/locked.log" and failed["status"] == "failed"
    assert "Permission denied" in failed["error"] and failed["path"] == str(locked)
    assert [line for line in err_lines(out) if "error" in line] == [f"s3po: error: {failed['error']}"]


def files_under_names(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_tree_to_a_missing_bucket_exits_1_keeping_every_file(cli_env, tmp_path) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    out = s3po("upload", "--retries", "0", str(src), "s3://no-such-bucket-s3po/p/", env=cli_env)
    assert out.returncode == 1
    assert files_under(src) == files
    errors = [line for line in err_lines(out) if line.startswith("s3po: error:")]
    assert len(errors) == len(files) and all("NoSuchBucket" in line for line in errors)


def test_enqueue_a_tree_in_pipelined_batches(cli_env, redis_client, tmp_path) -> None:
    src = tmp_path / "spool"
    for i in range(1203):  # more than one batch
        (src / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 7}" / f"f{i}.log").write_text(str(i))
    (src / "d0" / "x.partial").write_text("still being written")
    out = s3po("enqueue", "--exclude", "*.partial", "--compress", "gzip", str(src), "s3://logs/in/", env=cli_env)
    assert out.returncode == 0, out.stderr
    ids = out.stdout.decode().split()
    jobs = [Job.from_json(raw) for raw in redis_client.lrange("s3po:queue", 0, -1)]
    assert len(jobs) == len(ids) == 1203 and {j.id for j in jobs} == set(ids)
    assert {j.key for j in jobs} == {f"in/d{i % 7}/f{i}.log" for i in range(1203)}
    assert all(j.path == str(src / j.key[3:]) and j.delete and j.compress == "gzip" for j in jobs)
    assert "queued 1203 of 1203 files" in out.stderr.decode()


def test_enqueue_json_and_the_keep_flag(cli_env, redis_client, tmp_path) -> None:
    src = tmp_path / "spool"
    src.mkdir()
    (src / "a.txt").write_text("aa")
    out = s3po("enqueue", "--keep", "--json", str(src), "s3://logs/in/", env=cli_env)
    assert out.returncode == 0, out.stderr
    [row] = records(out)
    job = Job.from_json(redis_client.rpop("s3po:queue"))
    assert row == {
        "path": str(src / "a.txt"),
        "bucket": "logs",
        "key": "in/a.txt",
        "bytes_read": 2,
        "bytes_stored": None,
        "checksum": None,
        "status": "queued",
        "error": None,
        "id": job.id,
    }
    assert job.delete is False


def test_ls_lists_what_arrived(cli_env, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"12345")
    s3.put_object(Bucket=bucket, Key="in/sub/b.bin", Body=b"x" * 2048)
    s3.put_object(Bucket=bucket, Key="other.txt", Body=b"o")
    out = s3po("ls", f"s3://{bucket}/in/", env=cli_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert [line.split()[2:] for line in lines] == [["5", "in/a.txt"], ["2048", "in/sub/b.bin"]]
    assert all(len(line.split()[0]) == 10 and line.split()[0][4] == "-" for line in lines), "dates first"
    out = s3po("ls", "--json", f"s3://{bucket}", env=cli_env)
    rows = records(out)
    assert [(r["key"], r["size"]) for r in rows] == [("in/a.txt", 5), ("in/sub/b.bin", 2048), ("other.txt", 1)]
    assert rows[0]["etag"] == s3.head_object(Bucket=bucket, Key="in/a.txt")["ETag"].strip('"')
    buckets = s3po("ls", env=cli_env)
    assert buckets.returncode == 0 and bucket in buckets.stdout.decode()
    missing = s3po("ls", "s3://no-such-bucket-s3po/", env=cli_env)
    assert missing.returncode == 1 and len(err_lines(missing)) == 1 and b"NoSuchBucket" in missing.stderr


def test_download_a_prefix_with_filters(cli_env, s3, bucket, tmp_path) -> None:
    for key in ("p/a.log", "p/b.txt", "p/sub/c.log", "p/sub/", "elsewhere.log"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    out = s3po(
        "download", f"s3://{bucket}/p/", str(tmp_path / "got"), "--exclude", "*", "--include", "*.log", env=cli_env
    )
    assert out.returncode == 0, out.stderr
    assert files_under(tmp_path / "got") == {"a.log": b"p/a.log", "sub/c.log": b"p/sub/c.log"}
