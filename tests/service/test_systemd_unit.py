"""The shipped systemd unit: verified by systemd-analyze, sandboxed, and free of secrets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from servers import find_binary

UNIT = ROOT / "systemd" / "s3pod.service"
ENV_EXAMPLE = ROOT / "systemd" / "s3pod.env.example"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; scripts/install-system-deps installs it)",
)


def directives(text: str) -> list[tuple[str, str]]:
    """Return the unit's ``Key=value`` lines in order (a key may repeat)."""
    return [
        tuple(line.split("=", 1))
        for line in text.splitlines()  # type: ignore[misc]
        if "=" in line and not line.lstrip().startswith(("#", ";"))
    ]


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """Return what ``systemd-analyze verify`` says about the unit (nothing when it is clean).

    ExecStart points to the s3pod installed here: verify checks the command exists, and
    /opt/s3po/bin/s3pod (the README's location) does not exist on a test machine.
    """
    path = tmp_path / "s3pod.service"
    path.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={find_binary('s3pod')}", unit_text))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=120
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "s3pod.service" in line]
    if result.returncode != 0:
        problems.append(f"exit status {result.returncode}")
    return problems


@needs_systemd_analyze
def test_unit_verifies_clean(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == []


@needs_systemd_analyze
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    broken = broken.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe")
    problems = verify(broken, tmp_path)
    assert any("Unknown key 'ProtectSytem'" in p for p in problems)
    assert any("Failed to parse boolean" in p for p in problems)


def test_unit_is_a_notify_service_restarted_on_failure() -> None:
    d = dict(directives(UNIT.read_text()))
    assert d["Type"] == "notify"
    assert d["Restart"] == "on-failure"
    assert d["User"] == "s3pod"
    assert d["EnvironmentFile"] == "/etc/s3po/s3pod.env"
    # no --daemon under systemd, no option with a secret: those are in the EnvironmentFile
    assert d["ExecStart"] == "/opt/s3po/bin/s3pod --config /etc/s3po/s3pod.toml"
    assert d["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_no_secret_in_the_unit() -> None:
    for key, value in directives(UNIT.read_text()):
        assert key not in ("Environment",), "settings belong in the EnvironmentFile"
        assert not re.search(r"secret|password|token", value, re.IGNORECASE), f"{key}={value}"


def test_unit_is_sandboxed() -> None:
    d = directives(UNIT.read_text())
    for setting in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ReadWritePaths", "/var/spool/s3po"),
        ("CapabilityBoundingSet", ""),
    ]:
        assert setting in d


@needs_systemd_analyze
def test_systemd_analyze_security_rates_it_ok() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for s3pod\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    # 0 is a fully locked-down unit, 10 an unprotected one; "OK" is below 2.
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK", result.stdout


def test_env_example_names_only_variables_s3pod_reads() -> None:
    import click

    from s3pod.cli import command

    known = {p.envvar for p in command.params if isinstance(p, click.Option) and p.envvar}
    named = re.findall(r"(?m)^#?(S3POD_[A-Z_]+)=", ENV_EXAMPLE.read_text())
    assert named, "no variables found in the example"
    assert set(named) <= known, set(named) - known
    for required in (
        "S3POD_REDIS_URL",
        "S3POD_SECRET_KEY",
        "S3POD_ALLOW_DIR",
        "S3POD_METRICS_LISTEN",
        "S3POD_API_LISTEN",
        "S3POD_API_TOKEN",
        "S3POD_LOG_FORMAT",
    ):
        assert required in named
