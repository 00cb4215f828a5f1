"""The docs say what the code does: defaults, options, paths and links are checked against it.

README.md is the front page and docs/*.md the reference. Each table of defaults a reader
relies on (TransferSettings, s3pod's options, the job's fields, the checksum modes) is read
back here and compared with the code, every path the docs name must exist, every relative
link must lead to a file and heading that exist, and the producer examples run against a
real Redis. The long walkthroughs run in their own tests (see the table in docs/development.md).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import REGION

from s3po_client import Job
from s3po_client.job import DEFAULT_RETRIES
from s3po_client.retry import DEFAULT_BACKOFF_BASE_S, RetryPolicy
from s3po_client.settings import MiB, TransferSettings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def section(page: str, heading: str) -> str:
    """Return the text under ``heading`` (a whole ``## …`` line) up to the next heading of its level or above."""
    text = (ROOT / page).read_text()
    level = heading.split(" ", 1)[0]
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)", text, re.S | re.M)
    assert match, f"{page} has no {heading!r}"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    """Return the cells of every row of the first Markdown table in ``text``, header and rule left out."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [row for row in cells[2:] if row]


def literal(cell: str) -> str | None:
    """Return the text of a cell that is one `code` span, else None."""
    match = re.fullmatch(r"`([^`]*)`", cell)
    return match.group(1) if match else None


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; the reference belongs in docs/"


def test_reliability_names_the_default_checksum_mode() -> None:
    rows = table_rows(section("docs/RELIABILITY.md", '### What "verified" means, per checksum mode'))
    defaults = [row[0] for row in rows if "(default)" in row[0]]
    assert defaults == [f"`{TransferSettings().checksum}` (default)"], defaults


def test_transfers_names_the_default_checksum_mode() -> None:
    rows = table_rows(section("docs/transfers.md", "## Verification"))
    assert [row[0] for row in rows if "(default)" in row[0]] == [f'`"{TransferSettings().checksum}"` (default)']


def parse_setting(cell: str) -> Any:
    """Return the value a defaults cell names: ``16 MiB``, ``4``, ``0.25``, `` `"auto"` ``, `` `False` ``."""
    if m := re.fullmatch(r"(\d+) MiB", cell):
        return int(m.group(1)) * MiB
    code = literal(cell)
    if code is not None:
        return {"True": True, "False": False, "None": None}.get(code, code.strip('"'))
    return float(cell) if "." in cell else int(cell)


def test_transfer_settings_table_matches_the_code() -> None:
    rows = table_rows(section("docs/transfers.md", "## TransferSettings"))
    documented = {literal(row[0]): parse_setting(row[1]) for row in rows}
    defaults = {f.name: getattr(TransferSettings(), f.name) for f in dataclasses.fields(TransferSettings)}
    assert documented == defaults


def test_s3pod_options_table_matches_the_command() -> None:
    from s3pod.cli import command

    params = {p.opts[0]: p for p in command.params if p.opts[0] not in ("--help",)}
    rows = table_rows(section("docs/service.md", "## Options"))
    documented = {re.match(r"`(--[a-z-]+)", row[0]).group(1): row for row in rows}  # type: ignore[union-attr]
    assert set(documented) == set(params), set(documented) ^ set(params)
    for name, (_, env, default, _meaning) in documented.items():
        param = params[name]
        envvar = getattr(param, "envvar", None)
        assert (re.match(r"`(\w+)`", env).group(1) if env else None) == envvar, name  # type: ignore[union-attr]
        if literal(default) is not None and not getattr(param, "is_flag", False):
            code = literal(default)
            assert code == str(param.default) or float(code) == param.default, (name, code, param.default)  # type: ignore[arg-type]


def test_job_fields_table_matches_the_job() -> None:
    rows = table_rows(section("docs/job-format.md", "## Fields"))
    job = Job(bucket="b", key="k", path="/tmp/f")
    assert [literal(row[0]) for row in rows] == [f.name for f in dataclasses.fields(Job)]
    given = {"true": True, "false": False, "null": None, "{}": {}}
    for row in rows:
        name, default = literal(row[0]), literal(row[2])
        if default is not None:
            value = getattr(job, name)  # type: ignore[arg-type]
            assert given.get(default, default) == (dict(value) if name == "headers" else value) or (
                default.isdigit() and int(default) == value
            ), name


def test_retry_facts_match_the_policy() -> None:
    text = section("docs/transfers.md", "## Retries")
    base = re.search(r"base (\d+) s by default", text)
    assert base and float(base.group(1)) == DEFAULT_BACKOFF_BASE_S
    policy = RetryPolicy()
    assert policy.factor == 2 and policy.jitter and "full jitter" in text
    assert f"`retries` (default {DEFAULT_RETRIES})" in (DOCS / "python-api.md").read_text()


#: how the docs name a file or directory of this repository
PATH_IN_DOCS = re.compile(r"(?<![\w/.-])((?:s3po_client|s3pod|tests|bench|scripts|systemd|constraints)/[\w./*-]*\w)")
#: what the benchmarks write when they run, not kept in the repository
WRITTEN_BY_RUNS = ("bench/results/",)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_named_exists(page: Path) -> None:
    named = {p for p in PATH_IN_DOCS.findall(page.read_text()) if not p.startswith(WRITTEN_BY_RUNS)}
    missing = sorted(p for p in named if not any(ROOT.glob(p)))
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def slug(heading: str) -> str:
    """Return the anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_the_enqueue_examples_run(redis_server: Any, redis_client: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """README.md's and docs/python-api.md's enqueue example, with a real file and this Redis."""
    monkeypatch.setenv("S3PO_REDIS_URL", redis_server.url)
    (tmp_path / "app.log").write_text("log line\n")
    for page, heading in (
        ("README.md", "## Three ways to use s3po"),
        ("docs/python-api.md", "## enqueue and enqueue_many"),
    ):
        block = re.search(r"^```python\n(.*?)^```", section(page, heading), re.S | re.M)
        assert block, f"{page} {heading!r} has no example"
        code = block.group(1).replace("/var/spool/app/app.log", str(tmp_path / "app.log"))
        namespace: dict[str, Any] = {}
        exec(compile(code, page, "exec"), namespace)
        job = Job.from_json(redis_client.rpop("s3po:queue"))
        assert job.id == namespace["job_id"] and job.path == str(tmp_path / "app.log"), page


@pytest.mark.parametrize("page", ["README.md", "docs/job-format.md"])
def test_the_lpush_example_for_other_languages_queues_a_valid_job(
    page: str, redis_server: Any, redis_client: Any
) -> None:
    (command,) = re.findall(r"^```sh\n(redis-cli .*?)\n```", (ROOT / page).read_text(), re.S | re.M)
    command = command.replace("redis-cli ", f"redis-cli -u {redis_server.url} ", 1)
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, timeout=30)
    job = Job.from_json(redis_client.rpop("s3po:queue"))
    assert (job.bucket, job.retries, job.delete) == ("my-bucket", DEFAULT_RETRIES, True)


def test_the_readme_connection_example_runs(s3_server: Any, redis_server: Any, s3: Any, tmp_path: Path) -> None:
    """README.md's ``Connection`` example, in a fresh interpreter configured only through the environment."""
    (block,) = re.findall(
        r"^```python\n(.*?)^```",
        section("README.md", "### 2. `Connection`: uploads and downloads in your process"),
        re.S | re.M,
    )
    try:
        s3.create_bucket(Bucket="my-bucket")
    except Exception as exc:  # noqa: BLE001 - SeaweedFS answers BucketAlreadyExists for a bucket of the session
        if "BucketAlready" not in str(exc):
            raise
    (tmp_path / "report.csv").write_text("a,b\n1,2\n")
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
    code = block + "\nassert data == b'a,b\\n1,2\\n', data\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not (tmp_path / "report.csv").exists(), "the example says report.csv is deleted"
    assert s3.get_object(Bucket="my-bucket", Key="reports/report.csv")["ContentEncoding"] == "gzip"


def test_the_redis_py_example_pushes_to_the_shard_enqueue_would_choose(redis_server: Any, redis_client: Any) -> None:
    from s3po_client.producer import shard_index

    (block,) = re.findall(
        r"^```python\n(.*?)^```", section("docs/job-format.md", "## Pushing jobs from other languages"), re.S | re.M
    )
    namespace: dict[str, Any] = {}
    exec(compile(block.replace("redis://127.0.0.1:6379/0", redis_server.url), "docs/job-format.md", "exec"), namespace)
    prefixes, job = namespace["prefixes"], namespace["job"]
    chosen = prefixes[shard_index(job["bucket"], job["key"], len(prefixes))]
    assert Job.from_json(redis_client.rpop(f"{chosen}:queue")).key == job["key"]
