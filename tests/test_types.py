"""The code passes `mypy --strict` and ruff's lint and format check (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_packages_pass_mypy_strict() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "s3po_client", "s3pod"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout


def test_code_passes_ruff() -> None:
    """ruff's lint and its formatter (settings in pyproject.toml) find nothing to change."""
    ruff = [sys.executable, "-m", "ruff"]
    lint = subprocess.run([*ruff, "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    form = subprocess.run([*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert form.returncode == 0, form.stdout + form.stderr
