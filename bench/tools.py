"""The peers' commands, each at its defaults unless the case says otherwise, and every tool's version.

``make bench`` installs them: rclone, curl, gzip and pigz from the distribution
(``BENCH=1 scripts/install-system-deps``), the AWS CLI in ``.venv-awscli`` (it pins its own
botocore). A missing one is left out of the table, and said so.
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rig import BUCKET, ROOT, Endpoint, Rig
from servers import REGION  # rig put tests/ on the path

AWS = shutil.which("aws", path=str(ROOT / ".venv-awscli" / "bin"))
RCLONE = shutil.which("rclone")
CURL = shutil.which("curl")
GZIP = shutil.which("gzip")
PIGZ = shutil.which("pigz")


def aws(endpoint: Endpoint, *args: str) -> list[str]:
    """``aws s3 …`` against ``endpoint`` (its CA bundle comes from AWS_CA_BUNDLE in ``Rig.env``)."""
    assert AWS is not None
    return [AWS, "--endpoint-url", endpoint.url, "--only-show-errors", *args]


def rclone(endpoint: Endpoint, *args: str) -> list[str]:
    """``rclone …`` with the store as the remote ``:s3:``, configured by flags alone (no config file)."""
    assert RCLONE is not None
    rig_flags = [
        "--config",
        "/dev/null",
        "--s3-provider",
        "Other",
        "--s3-env-auth",
        "--s3-endpoint",
        endpoint.url,
        "--s3-region",
        REGION,
    ]
    # The CA bundle goes by flag: rclone fails with one in AWS_CA_BUNDLE (see ``environment``).
    if endpoint.ca_bundle:
        rig_flags += ["--ca-cert", endpoint.ca_bundle]
    return [RCLONE, *rig_flags, *args]


def environment(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment a peer's command runs in: rclone gets its CA bundle by flag, and fails with one in AWS_CA_BUNDLE."""
    if argv[0] == RCLONE:
        return {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    return env


def rclone_remote(path: str) -> str:
    return f":s3:{BUCKET}/{path}"


def curl_put(rig: Rig, endpoint: Endpoint, path: Path, key: str) -> list[str]:
    """One PUT of the whole file, signed with SigV4 by curl (the raw HTTP ceiling: no parts, no checksum)."""
    assert CURL is not None
    argv = [
        CURL,
        "--silent",
        "--show-error",
        "--fail",
        "--output",
        "/dev/null",
        "--aws-sigv4",
        f"aws:amz:{REGION}:s3",
        "--user",
        f"{rig.s3.access_key}:{rig.s3.secret_key}",
        "--upload-file",
        str(path),
        f"{endpoint.url}/{BUCKET}/{key}",
    ]
    if endpoint.ca_bundle:
        argv[1:1] = ["--cacert", endpoint.ca_bundle]
    return argv


def missing() -> list[str]:
    """The peers this machine lacks (their rows are left out)."""
    found = {"aws (.venv-awscli)": AWS, "rclone": RCLONE, "curl": CURL, "gzip": GZIP, "pigz": PIGZ}
    return [name for name, path in found.items() if path is None]


def version_of(argv: list[str], pattern: str) -> str:
    """The first match of ``pattern``'s group in what ``argv`` prints (its version), else its first line."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (out.stdout or out.stderr).strip()
    found = re.search(pattern, text)
    return found.group(1) if found else (text.splitlines()[0] if text else "unknown")


def versions() -> dict[str, str]:
    """The version of every tool and library in the table, and of the servers."""
    found = {"Python": platform.python_version()}
    for package in ("s3po", "boto3", "botocore", "s3transfer", "redis", "isal"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import find_binary

    commands = {
        "AWS CLI": (AWS, ["--version"], r"aws-cli/(\S+)"),
        "rclone": (RCLONE, ["version"], r"rclone (v\S+)"),
        "curl": (CURL, ["--version"], r"curl (\S+)"),
        "gzip": (GZIP, ["--version"], r"gzip (\S+)"),
        "pigz": (PIGZ, ["--version"], r"pigz (\S+)"),
        "SeaweedFS": (find_binary("weed"), ["version"], r"version \S+ (\S+)"),
        "redis-server": (find_binary("redis-server"), ["--version"], r"v=(\S+)"),
        "openssl": ("openssl", ["version"], r"OpenSSL (\S+)"),
    }
    for name, (binary, args, pattern) in commands.items():
        found[name] = version_of([binary, *args], pattern) if binary else "not found"
    return found
