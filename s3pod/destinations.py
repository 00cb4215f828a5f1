"""Named destinations: a job's ``destination`` picks the store it goes to, each with its own engine.

The config file's ``[destinations.NAME]`` tables describe them: an endpoint, a region, the
credentials of a profile (or the environment: boto3's chain, never a key in the file), a CA
bundle, a checksum mode, default headers, a bandwidth limit. A job without a destination
goes to the command line's store, as every job did before destinations existed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from s3po_client.errors import ConfigError, JobError
from s3po_client.job import DESTINATION_NAME, Job
from s3po_client.settings import CHECKSUM_MODES, S3Settings, TransferSettings
from s3po_client.transfer import TransferEngine
from s3po_client.transfer.bandwidth import Limiter, parse_bwlimit

#: what a ``[destinations.NAME]`` table may set (``-`` or ``_``)
KEYS = ("endpoint_url", "region", "profile", "ca_bundle", "checksum", "headers", "bwlimit")
#: keys refused with their reason: the file may be world-readable
SECRETS = ("secret_key", "access_id", "api_token")


@dataclass(frozen=True, kw_only=True, slots=True)
class Destination:
    """One ``[destinations.NAME]`` table: where its jobs go and how (unset: the command line's value)."""

    name: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    ca_bundle: str | None = None
    checksum: str | None = None
    #: headers every job of this destination gets, under its own (a job's header wins)
    headers: Mapping[str, str] = field(default_factory=dict)
    bwlimit: str | None = None

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
        try:
            self.s3_settings(S3Settings())
            if self.bwlimit is not None:
                parse_bwlimit(self.bwlimit)
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
            profile=self.profile,
            ca_bundle=self.ca_bundle or base.ca_bundle,
        )

    def __str__(self) -> str:
        shown = {k: getattr(self, k) for k in KEYS if getattr(self, k)}
        shown["headers"] = dict(self.headers) if self.headers else None
        return f"{self.name}: " + " ".join(f"{k}={v}" for k, v in shown.items() if v)


class Destinations:
    """The engine of each destination, built on first use; the default engine for jobs naming none."""

    def __init__(
        self,
        default: TransferEngine,
        destinations: tuple[Destination, ...] = (),
    ) -> None:
        self.default = default
        self.destinations = {d.name: d for d in destinations}
        self._engines: dict[str, TransferEngine] = {}
        self._lock = threading.Lock()

    def route(self, job: Job) -> tuple[TransferEngine, Mapping[str, str]]:
        """Return the engine for ``job`` and the headers to send; JobError if its destination is unknown."""
        if job.destination is None:
            return self.default, job.headers
        destination = self.destinations.get(job.destination)
        if destination is None:
            known = ", ".join(sorted(self.destinations)) or "none configured"
            raise JobError(f"unknown destination {job.destination!r} (known: {known})")
        headers = MappingProxyType({**destination.headers, **job.headers})
        return self._engine(destination), headers

    def engine_for(self, job: Job | None) -> TransferEngine:
        """Return the engine of ``job``'s destination: the default one for none, or one not known."""
        destination = self.destinations.get(job.destination or "") if job is not None else None
        return self.default if destination is None else self._engine(destination)

    def close(self) -> None:
        """Close every engine built for a destination (not the default one: its owner closes it)."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def _engine(self, destination: Destination) -> TransferEngine:
        with self._lock:
            engine = self._engines.get(destination.name)
            if engine is None:
                engine = self._engines[destination.name] = self._build(destination)
            return engine

    def _build(self, destination: Destination) -> TransferEngine:
        base = self.default
        settings: TransferSettings = base.settings
        if destination.checksum is not None:
            settings = replace(settings, checksum=destination.checksum)  # type: ignore[arg-type]
        limiter: Limiter = base.limiter
        if destination.bwlimit is not None:
            limiter = Limiter(parse_bwlimit(destination.bwlimit))
        return TransferEngine(destination.s3_settings(base.s3), settings, base.retry, limiter=limiter)


__all__ = ["Destination", "Destinations"]
