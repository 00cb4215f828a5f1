"""The house rules of DESIGN.md, checked: which package may import which, and how big code may grow.

- ``s3po_client`` never imports ``s3pod`` (dependency runs one way);
- ``s3po_client.transfer`` imports nothing that talks to Redis;
- ``import s3po_client; s3po_client.enqueue(...)`` loads neither boto3 nor the daemon;
- no module over 400 lines, no function over 60.

The import rules are read from the source with :mod:`ast`, so an import inside a function
or under ``TYPE_CHECKING`` counts too; each failure names every offender and where it is.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from conftest import ROOT

from s3po_client.keys import QueueKeys

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
PACKAGES = ("s3po_client", "s3pod")
#: What ``s3po_client.transfer`` must not import: Redis itself, the modules of ours that talk
#: to it, and the daemon.
REDIS_SIDE = (
    "redis",
    "s3po_client.producer",
    "s3po_client.admin",
    "s3po_client.redis_url",
    "s3po_client.keys",
    "s3pod",
)


def modules(under: Path) -> Iterator[Path]:
    yield from sorted(under.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def reexports(package: str) -> dict[str, str]:
    """For ``package``'s ``__init__``: each name it imports from a module of its own → that module."""
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    if not init.is_file():
        return {}
    found = {}
    for node in ast.walk(ast.parse(init.read_text(), str(init))):
        if isinstance(node, ast.ImportFrom):
            source = resolve(package, True, node.level, node.module)
            for alias in node.names:
                found[alias.asname or alias.name] = source
    return found


def resolve(importer: str, importer_is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of the module ``from <level dots><module> import ...`` reads, in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not importer_is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (line, absolute name), a name from a package as the module it comes from."""
    return imported_by(path.read_text(), module_name(path), is_package(path))


def imported_by(source: str, importer: str, importer_is_package: bool) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            source = resolve(importer, importer_is_package, node.level, node.module)
            yield node.lineno, source
            names = reexports(source) if source.split(".")[0] in PACKAGES else {}
            for alias in node.names:
                yield node.lineno, names.get(alias.name, f"{source}.{alias.name}")


def offending_imports(under: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = set()
    for path in modules(under):
        for line, name in imported(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.add(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(found)


def test_the_client_never_imports_the_daemon() -> None:
    assert offending_imports(ROOT / "s3po_client", ("s3pod",)) == []


def test_the_transfer_engine_imports_nothing_that_talks_to_redis() -> None:
    assert offending_imports(ROOT / "s3po_client" / "transfer", REDIS_SIDE) == []


def test_the_import_checks_see_every_form_of_import() -> None:
    """The rules above would catch an import written any of the ways Python allows."""
    lines = {
        "import redis": "redis",
        "import redis.client as rc": "redis.client",
        "from redis import Redis": "redis",
        "from ..keys import QueueKeys": "s3po_client.keys",
        "from .. import producer": "s3po_client.producer",
        "from s3po_client import QueueKeys": "s3po_client.keys",
        "from s3pod.consumer import claim": "s3pod.consumer",
    }
    source = "".join(f"def f{i}():\n    {line}\n" for i, line in enumerate(lines))
    names = {name for _, name in imported_by(source, "s3po_client.transfer.probe", False)}
    assert set(lines.values()) <= names, sorted(names)


def test_enqueue_loads_neither_boto3_nor_the_daemon(
    redis_server: Any, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "f.log"
    path.write_text("x")
    script = textwrap.dedent(
        f"""
        import json, sys
        import s3po_client
        job_id = s3po_client.enqueue("b", "k", {str(path)!r}, redis_url={redis_server.url!r}, prefix="layout")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer", "s3pod"))
        print(json.dumps({{"id": job_id, "heavy": heavy}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    (raw,) = redis_client.lrange(QueueKeys("layout").queue, 0, -1)
    assert json.loads(raw)["id"] == result["id"]  # enqueue really ran


def sizes() -> Iterator[tuple[Path, int, list[tuple[str, int, int]]]]:
    """Each module: its path, its line count, and each function's (qualified name, line, length)."""
    for package in PACKAGES:
        for path in modules(ROOT / package):
            text = path.read_text()
            functions: list[tuple[str, int, int]] = []
            collect_functions(ast.parse(text, str(path)), "", functions)
            yield path, len(text.splitlines()), functions


def collect_functions(node: ast.AST, prefix: str, into: list[tuple[str, int, int]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # ``lineno`` is the ``def`` line: decorators are not counted.
            assert child.end_lineno is not None
            into.append((prefix + child.name, child.lineno, child.end_lineno - child.lineno + 1))
            collect_functions(child, f"{prefix}{child.name}.", into)
        elif isinstance(child, ast.ClassDef):
            collect_functions(child, f"{prefix}{child.name}.", into)
        else:
            collect_functions(child, prefix, into)


def test_no_module_over_400_lines() -> None:
    over = sorted(
        ((lines, str(path.relative_to(ROOT))) for path, lines, _ in sizes() if lines > MAX_MODULE_LINES), reverse=True
    )
    assert over == [], "modules over 400 lines:\n" + "\n".join(f"  {path}: {lines} lines" for lines, path in over)


def test_no_function_over_60_lines() -> None:
    over = sorted(
        (
            (length, f"{path.relative_to(ROOT)}:{line} {name}")
            for path, _, functions in sizes()
            for name, line, length in functions
            if length > MAX_FUNCTION_LINES
        ),
        reverse=True,
    )
    assert over == [], "functions over 60 lines:\n" + "\n".join(f"  {where}: {length} lines" for length, where in over)


def test_the_size_rules_count_as_they_say() -> None:
    """A 61-line function under a decorator is one too many; a 60-line one is not."""
    source = "@decorator\n@another\ndef long():\n" + "    x = 1\n" * 60 + "\ndef ok():\n" + "    x = 1\n" * 59
    found: list[tuple[str, int, int]] = []
    collect_functions(ast.parse(source), "", found)
    assert found == [("long", 3, 61), ("ok", 65, 60)]
