"""What s3pod does with its settings besides running: ``--check-config``'s report and SIGHUP's reload.

A reload re-reads the config file and applies what can change while running (the
bandwidth limit, the log level, the ``[[watch]]`` tables) unless the command line or the
environment sets it; every other change is logged as needing a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import click
from click.core import ParameterSource  # click 8.1.0, the floor, does not export it at the top level

from s3po_client.destinations import Destination
from s3po_client.errors import ConfigError
from s3po_client.redaction import redact
from s3po_client.transfer.bandwidth import OFF, Schedule, parse_bwlimit

from . import configfile
from .live import Live
from .service.logs import set_level
from .watchspec import SpoolSettings

logger = logging.getLogger("s3pod")

#: the settings a SIGHUP applies without a restart
RELOADABLE = ("bwlimit", "log_level")
#: where a value comes from when it overrides the config file's
OVERRIDES = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
_SOURCES = {
    ParameterSource.COMMANDLINE: "command line",
    ParameterSource.ENVIRONMENT: "environment",
    ParameterSource.DEFAULT_MAP: "config file",
    ParameterSource.DEFAULT: "default",
}


def effective_settings(
    ctx: click.Context,
    options: Mapping[str, Any],
    spool: SpoolSettings,
    secrets: Iterable[str],
    destinations: Iterable[Destination] = (),
) -> list[str]:
    """Return one line per option (``name = value  # where it comes from``), then per destination and watch.

    Each of ``secrets`` (and any password in a URL) shows as ``***``.
    """
    secrets = list(secrets)
    lines = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in configfile.NOT_IN_FILE or param.name is None:
            continue
        shown = redact(_shown(options[param.name]), secrets)
        source = ctx.get_parameter_source(param.name)
        lines.append(f"{param.opts[0][2:]} = {shown}  # {_SOURCES.get(source, 'default') if source else 'default'}")
    for destination in destinations:
        lines.append(f"# destination {destination}")
    for watch in spool.watches:
        lines.append(
            f"# watching {watch} compress={watch.compress or 'none'} keep={str(not watch.delete).lower()} "
            f"include={list(watch.include)} exclude={list(watch.exclude)} prune_empty_dirs={watch.prune_empty_dirs}"
            + (f" headers={dict(watch.headers)}" if watch.headers else "")
            + (f" destination={watch.destination}" if watch.destination else "")
        )
    return lines


def _shown(value: Any) -> str:
    if isinstance(value, Schedule):
        return value.text
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return "(none)" if value is None else str(value)


class Reloader:
    """Re-reads the config file on SIGHUP and applies what can change without a restart.

    ``spool_for`` returns the checked spool settings of a file's ``[[watch]]`` tables (with the
    command line's ``--watch-*`` settings), or raises ConfigError.
    """

    def __init__(
        self,
        ctx: click.Context,
        loaded: configfile.FileConfig,
        spool_for: Callable[[tuple[configfile.WatchTable, ...]], SpoolSettings] | None = None,
    ) -> None:
        self.ctx = ctx
        self.loaded = loaded
        self.spool_for = spool_for
        self._lock = threading.Lock()

    def reload(self, live: Live) -> None:
        """Re-read the file; apply the bandwidth limit, log level and watches; log what changed and what needs a restart."""
        with self._lock:
            try:
                new = configfile.load(self.loaded.path, self.ctx)
            except ConfigError as exc:
                logger.error("config reload failed, the settings in force stay: %s", exc)
                return
            old, self.loaded = self.loaded, new
            for name in RELOADABLE:
                before, after = old.defaults.get(name), new.defaults.get(name)
                if before == after:
                    continue
                if self.ctx.get_parameter_source(name) in OVERRIDES:
                    logger.warning("config reload: %s changed in the file, but the command line sets it", name)
                    continue
                logger.info("config reload: %s = %s (was %s)", name, after or "unset", before or "unset")
                if name == "bwlimit":
                    live.bandwidth.follow(parse_bwlimit(after) if after else Schedule.constant(OFF))
                else:
                    set_level(after or "INFO")
            if old.watches != new.watches and not self._rewatch(live, new.watches):
                self.loaded = replace(new, watches=old.watches)  # the next reload tries them again
            restart = sorted(
                name
                for name in {*old.defaults, *new.defaults}
                if name not in RELOADABLE and old.defaults.get(name) != new.defaults.get(name)
            )
            if old.destinations != new.destinations:
                restart.append("destinations")
            if restart:
                logger.warning("config reload: %s changed: takes effect after a restart", ", ".join(restart))
            else:
                logger.info("config reload: done, nothing needs a restart")

    def _rewatch(self, live: Live, tables: tuple[configfile.WatchTable, ...]) -> bool:
        """Give the watcher the file's new watches; False (logged, the watches in force stay) if they cannot be."""
        if self.spool_for is None or self.ctx.get_parameter_source("watches") in OVERRIDES:
            logger.warning("config reload: watch changed in the file, but the command line sets the watches")
            return True
        try:
            spool = self.spool_for(tables)
        except ConfigError as exc:
            logger.error("config reload: the watches in force stay: %s", exc)
            return False
        live.watch(spool)
        shown = ", ".join(str(w) for w in spool.watches) or "none"
        logger.info("config reload: watching %s", shown)
        return True


__all__ = ["RELOADABLE", "Reloader", "effective_settings"]
