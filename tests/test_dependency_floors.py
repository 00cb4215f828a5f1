"""pyproject.toml's dependency floors are the versions ``constraints/minimum.txt`` pins.

``make test-min`` installs s3po with that file and runs the suite, so a floor raised or
lowered in one place and not the other would test versions nobody declared.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints" / "minimum.txt"

#: a dependency as pyproject.toml must write it: a name and its floor (and at most an
#: environment marker, as ``tomli>=1.1; python_version < '3.11'``), nothing else
FLOOR = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)>=([0-9]+(?:\.[0-9]+)*)$")
#: a line of constraints/minimum.txt: a name pinned to one release
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9]+(?:\.[0-9]+)*)$")


def normalize(name: str) -> str:
    """Return a distribution name in its PEP 503 form (``Python_Daemon`` → ``python-daemon``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def floors(here_only: bool = False) -> dict[str, str]:
    """Return each runtime dependency's floor, as pyproject.toml declares it.

    ``here_only``: only those whose environment marker holds for this Python (the installed ones).
    """
    found = {}
    for text in pyproject()["project"]["dependencies"]:
        requirement = Requirement(text)
        match = FLOOR.match(f"{requirement.name}{requirement.specifier}")
        assert match and not requirement.extras, (
            f"pyproject.toml: {text!r} must read name>=X.Y.Z (a floor that constraints/minimum.txt pins)"
        )
        if here_only and requirement.marker is not None and not requirement.marker.evaluate():
            continue
        found[normalize(match[1])] = match[2]
    return found


def tool_floors() -> dict[str, str]:
    """Return the floor of each test tool of the ``test`` extra that reads ``name>=floor`` (no marker)."""
    found = {}
    for requirement in pyproject()["project"]["optional-dependencies"]["test"]:
        match = FLOOR.match(requirement.replace(" ", ""))
        if match:
            found[normalize(match[1])] = match[2]
    return found


def pins() -> dict[str, str]:
    """Return the versions constraints/minimum.txt pins."""
    found = {}
    for number, line in enumerate(CONSTRAINTS.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line.replace(" ", ""))
        assert match, f"constraints/minimum.txt:{number}: {line!r} must read name==X.Y.Z"
        name = normalize(match[1])
        assert name not in found, f"constraints/minimum.txt:{number}: {name} is pinned twice"
        found[name] = match[2]
    return found


def release(text: str) -> tuple[int, ...]:
    """Return the numeric release of a version (``"1.36.0"`` → ``(1, 36, 0)``), zero-padded for comparison."""
    match = re.match(r"[0-9]+(?:\.[0-9]+)*", text)
    assert match, f"not a version: {text!r}"
    parts = [int(part) for part in match[0].split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def test_the_minimum_constraints_pin_exactly_the_floors_of_pyproject() -> None:
    declared, pinned = floors(), pins()
    assert declared, "pyproject.toml declares no dependencies"
    runtime = {name: pin for name, pin in pinned.items() if name in declared}
    assert runtime == declared, (
        "constraints/minimum.txt and pyproject.toml disagree: "
        f"only in pyproject {sorted(declared.items() - runtime.items())}, "
        f"only in constraints {sorted(runtime.items() - declared.items())}"
    )
    # Any other pin is a test tool (the suite's runner) at its floor in the test extra.
    tools = {name: pin for name, pin in pinned.items() if name not in declared}
    assert tools.items() <= tool_floors().items(), (
        f"constraints/minimum.txt pins {sorted(tools.items() - tool_floors().items())}: neither a dependency "
        "nor a test tool of pyproject.toml's test extra at its floor"
    )


def test_mypy_checks_for_the_oldest_python_that_requires_python_admits() -> None:
    data = pyproject()
    # The Makefile reads it in this form too, to find that Python for make test-min.
    match = re.fullmatch(r">=(3\.[0-9]+)", data["project"]["requires-python"])
    assert match, f"requires-python must read >=3.N, got {data['project']['requires-python']!r}"
    assert data["tool"]["mypy"]["python_version"] == match[1]


def test_installed_versions_are_within_the_floors() -> None:
    """Each dependency installed here is at least its floor; under ``make test-min``, exactly it."""
    exact = os.environ.get("S3PO_EXPECT_FLOORS") == "1"
    tools = {name: floor for name, floor in tool_floors().items() if name in pins()}
    for name, floor in {**floors(here_only=True), **tools}.items():
        installed = version(name)
        if exact:
            assert release(installed) == release(floor), f"{name} {installed} installed, floor {floor}"
        else:
            assert release(installed) >= release(floor), f"{name} {installed} installed, below floor {floor}"
