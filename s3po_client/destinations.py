"""Named destinations: the ``[destinations.NAME]`` tables of s3pod's config file, read by s3pod and ``s3po``.

A destination names a store and how to reach it: an endpoint, a region, an addressing
style, the credentials of a profile (or the environment: boto3's chain, never a key in the
file), a CA bundle, a checksum mode, default headers, a bandwidth limit, and (for s3pod) a
share of the daemon's memory budget. A job naming one goes there (s3pod); ``s3po upload
--destination NAME --config FILE`` uploads there now, with the same settings read from the
same file. Nothing here imports boto3.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .job import DESTINATION_NAME
from .settings import CHECKSUM_MODES, S3Settings, TransferSettings

if TYPE_CHECKING:
    from .transfer.bandwidth import Schedule

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: what a ``[destinations.NAME]`` table may set (``-`` or ``_``)
KEYS = (
    "endpoint_url",
    "region",
    "addressing_style",
    "profile",
    "ca_bundle",
    "checksum",
    "headers",
    "bwlimit",
    "memory_share",
)
#: keys refused with their reason: the file may be world-readable
SECRETS = ("secret_key", "access_id", "api_token")


@dataclass(frozen=True, kw_only=True, slots=True)
class Destination:
    """One ``[destinations.NAME]`` table: where its jobs go and how (unset: the command line's value)."""

    name: str
    endpoint_url: str | None = None
    region: str | None = None
    #: ``path``, ``virtual`` or ``auto`` (botocore's ``addressing_style``); unset: path with an endpoint
    addressing_style: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    checksum: str | None = None
    #: headers every job of this destination gets, under its own (a job's header wins)
    headers: Mapping[str, str] = field(default_factory=dict)
    bwlimit: str | None = None
    #: the fraction (0 < share <= 1) of s3pod's ``--max-memory`` its jobs may hold at once; unset: all of it
    memory_share: float | None = None

    @classmethod
    def from_table(cls, name: str, table: Any) -> Destination:
        """Return the destination a table describes; ConfigError naming the key that is wrong."""
        where = f"[destinations.{name}]"
        if not DESTINATION_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a name is letters, digits, '_', '.', '-' (at most 64)")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        values: dict[str, Any] = {}
        for key, value in table.items():
            name_ = key.replace("-", "_")
            if name_ in SECRETS:
                raise ConfigError(
                    f"{where} {key}: no secret in the config file (it may be world-readable); "
                    "name a profile, or set the credentials in the environment file"
                )
            if name_ not in KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})")
            if name_ == "headers":
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    raise ConfigError(f"{where} headers: expected a table of strings")
            elif name_ == "memory_share":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                    raise ConfigError(f"{where} {key}: expected a fraction above 0, at most 1 (e.g. 0.25)")
                value = float(value)
            elif not isinstance(value, str):
                raise ConfigError(f"{where} {key}: expected a string")
            values[name_] = value
        destination = cls(name=name, **values)
        destination.check()
        return destination

    def check(self) -> None:
        """Raise ConfigError if a value cannot be used (built once here, so a wrong one stops the start)."""
        where = f"[destinations.{self.name}]"
        if self.checksum is not None and self.checksum not in CHECKSUM_MODES:
            raise ConfigError(f"{where} checksum: one of {', '.join(CHECKSUM_MODES)}, got {self.checksum!r}")
        try:  # the addressing style and endpoint are checked by S3Settings
            self.s3_settings(S3Settings())
            self.schedule()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def s3_settings(self, base: S3Settings) -> S3Settings:
        """Return ``base`` (the command line's store) with this destination's values; never its keys."""
        return replace(
            base,
            access_id=None,
            secret_key=None,
            endpoint_url=self.endpoint_url or base.endpoint_url,
            region=self.region or base.region,
            addressing_style=self.addressing_style or base.addressing_style,
            profile=self.profile,
            ca_bundle=self.ca_bundle or base.ca_bundle,
        )

    def transfer_settings(self, base: TransferSettings) -> TransferSettings:
        """Return ``base`` with this destination's checksum mode, if it sets one."""
        return base if self.checksum is None else replace(base, checksum=self.checksum)  # type: ignore[arg-type]

    def schedule(self) -> Schedule | None:
        """Return this destination's bandwidth limit as a schedule; None if it has none of its own."""
        from .transfer.bandwidth import parse_bwlimit

        return parse_bwlimit(self.bwlimit) if self.bwlimit is not None else None

    def headers_under(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Return this destination's default headers with ``headers`` over them (a job's or a command's win)."""
        return {**self.headers, **headers}

    def __str__(self) -> str:
        shown = {k: getattr(self, k) for k in KEYS if getattr(self, k)}
        shown["headers"] = dict(self.headers) if self.headers else None
        return f"{self.name}: " + " ".join(f"{k}={v}" for k, v in shown.items() if v)


def read_destinations(path: str) -> dict[str, Destination]:
    """Return the destinations the config file at ``path`` names, by name; ConfigError (one line) if one is wrong.

    Only the ``[destinations.NAME]`` tables are read: the file's other keys are s3pod's options,
    which ``s3pod --check-config`` checks.
    """
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tables = data.get("destinations", {})
    if not isinstance(tables, dict):
        raise KeyLines(path, text).error("destinations", "destinations: expected [destinations.NAME] tables")
    return {name: destination_in(name, table, KeyLines(path, text)) for name, table in tables.items()}


def read_text(path: str) -> str:
    """Return the config file's text; ConfigError (one line) if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


def destination_in(name: str, table: Any, where: KeyLines) -> Destination:
    """Return one ``[destinations.NAME]`` table checked; the error names the table's line."""
    try:
        return Destination.from_table(name, table)
    except ConfigError as exc:
        raise where.error(f"destinations.{name}", str(exc)) from None


@dataclass(frozen=True, slots=True)
class KeyLines:
    """Finds the line of a key (tomllib does not say): the first line that sets it or opens its table."""

    path: str
    text: str

    def error(self, key: str, message: str) -> ConfigError:
        """Return the ConfigError ``path, line N: message`` (without the line if the key is not found)."""
        pattern = re.compile(rf"^[ \t]*(\[\[?[ \t]*)?[\"']?{re.escape(key)}[\"']?[ \t]*(=|\])", re.MULTILINE)
        match = pattern.search(self.text)
        if match is None:
            return ConfigError(f"{self.path}: {message}")
        line = self.text.count("\n", 0, match.start()) + 1
        return ConfigError(f"{self.path}, line {line}: {message}")


__all__ = ["KEYS", "SECRETS", "Destination", "KeyLines", "destination_in", "read_destinations", "read_text"]
