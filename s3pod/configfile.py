"""``s3pod --config FILE``: a TOML file whose keys are the command's options, plus ``[[watch]]`` tables.

A key is an option's name without ``--`` (``allow-dir`` or ``allow_dir``); a repeatable option
takes a list. The file's values become click's ``default_map``, so the command line and the
environment override them. Every error is one line naming the file and, where it can be
found, the line (TOML decoding errors carry their own).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from s3po_client.destinations import Destination, KeyLines, destination_in, read_text
from s3po_client.errors import ConfigError, JobError
from s3po_client.job import DESTINATION_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: the options a file cannot set: the ones that name or check the file itself, and click's own
NOT_IN_FILE = frozenset({"config", "check_config", "help", "version"})
#: ``[[watch]]`` keys besides ``dir`` and ``to``, and the :class:`~s3pod.watchspec.WatchSpec` field each sets
WATCH_FIELDS = {
    "compress": "compress",
    "keep": "delete",
    "include": "include",
    "exclude": "exclude",
    "prune_empty_dirs": "prune_empty_dirs",
    "headers": "headers",
    "destination": "destination",
}


@dataclass(frozen=True, slots=True)
class WatchTable:
    """One ``[[watch]]`` table: ``DIR=s3://BUCKET/PREFIX`` and the WatchSpec fields it sets itself."""

    text: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FileConfig:
    """A config file read and checked: ``defaults`` (option name → value, click's default_map) and its watches."""

    path: str
    defaults: dict[str, Any]
    watches: tuple[WatchTable, ...]
    destinations: tuple[Destination, ...] = ()


def load(path: str, ctx: click.Context) -> FileConfig:
    """Read and check the file at ``path`` against ``ctx``'s command; ConfigError (one line) if it is wrong."""
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    where = KeyLines(path, text)
    options = _options(ctx.command)
    defaults: dict[str, Any] = {}
    watches: list[WatchTable] = []
    destinations: list[Destination] = []
    for key, value in data.items():
        if key == "destinations" and isinstance(value, dict):
            destinations += [destination_in(name, table, where) for name, table in value.items()]
            continue
        if _name(key) == "watch" and isinstance(value, list) and any(isinstance(v, dict) for v in value):
            watches += [_watch_table(item, where) for item in value]
            continue
        param = options.get(_name(key))
        if param is None:
            raise where.error(key, f"unknown key {key!r}")
        defaults[param.name] = _checked(param, value, ctx, where, key)
    _known_destinations(watches, destinations, where)
    return FileConfig(path, defaults, tuple(watches), tuple(destinations))


def read_config_file(ctx: click.Context, param: click.Parameter, path: str | None) -> FileConfig | None:
    """Read ``--config`` and make its values the other options' defaults; exit 2 with one line if it is wrong."""
    if path is None:
        return None
    try:
        loaded = load(path, ctx)
    except ConfigError as exc:
        click.echo(f"s3pod: {exc}", err=True)
        ctx.exit(2)
    ctx.default_map = {**(ctx.default_map or {}), **loaded.defaults}
    return loaded


def _options(command: click.Command) -> dict[str, click.Option]:
    """Return the options a file may set, by their long name with ``_`` for ``-``."""
    found = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in NOT_IN_FILE:
            for opt in param.opts:
                if opt.startswith("--"):
                    found[_name(opt[2:])] = param
    return found


def _name(key: str) -> str:
    return key.replace("-", "_")


def _checked(param: click.Option, value: Any, ctx: click.Context, where: KeyLines, key: str) -> Any:
    """Return ``value`` if the option takes it (a list for a repeatable option); ConfigError otherwise."""
    if param.multiple and not isinstance(value, list):
        value = [value]
    if isinstance(value, dict | list) and not param.multiple:
        raise where.error(key, f"{key}: expected one value, got a {'table' if isinstance(value, dict) else 'list'}")
    try:
        param.process_value(ctx, value)
    except click.BadParameter as exc:
        raise where.error(key, f"{key}: {exc.message}") from None
    return value


def _watch_headers(value: Any, where: KeyLines, key: str) -> tuple[tuple[str, str], ...]:
    """Return a ``[[watch]]`` table's headers as pairs, each one s3po can send (ConfigError naming the line)."""
    from s3po_client.transfer.headers import object_args

    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise where.error(key, "[[watch]] headers: expected a table of strings")
    try:
        object_args(value, compress=None, name="watch")
    except JobError as exc:
        raise where.error(key, f"[[watch]] headers: {exc}") from None
    return tuple(value.items())


def _known_destinations(watches: list[WatchTable], destinations: list[Destination], where: KeyLines) -> None:
    """Raise ConfigError if a ``[[watch]]`` names a destination the file does not describe."""
    known = sorted(d.name for d in destinations)
    for watch in watches:
        wanted = watch.fields.get("destination")
        if wanted is not None and wanted not in known:
            raise where.error(
                "destination",
                f"[[watch]] destination: no [destinations.{wanted}] (known: {', '.join(known) or 'none'})",
            )


def _watch_table(table: Any, where: KeyLines) -> WatchTable:
    """Return one ``[[watch]]`` table checked: ``dir`` and ``to`` strings, known keys of the right types."""
    if not isinstance(table, dict):
        raise where.error("watch", "watch: mix of tables and strings; use [[watch]] tables only")
    fields: dict[str, Any] = {}
    for key, value in table.items():
        name = _name(key)
        if name in ("dir", "to"):
            if not isinstance(value, str):
                raise where.error(key, f"[[watch]] {key}: expected a string")
        elif name in ("keep", "prune_empty_dirs"):
            if not isinstance(value, bool):
                raise where.error(key, f"[[watch]] {key}: expected true or false")
            fields[WATCH_FIELDS[name]] = not value if name == "keep" else value
        elif name in ("include", "exclude"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise where.error(key, f"[[watch]] {key}: expected a list of patterns")
            fields[name] = tuple(value)
        elif name == "compress":
            if value not in ("gzip", "zlib", "zstd"):
                raise where.error(key, f"[[watch]] compress: expected gzip, zlib or zstd, got {value!r}")
            fields[name] = value
        elif name == "headers":
            fields[name] = _watch_headers(value, where, key)
        elif name == "destination":
            if not isinstance(value, str) or not DESTINATION_NAME.fullmatch(value):
                raise where.error(key, f"[[watch]] destination: expected a destination's name, got {value!r}")
            fields[name] = value
        else:
            raise where.error(key, f"[[watch]]: unknown key {key!r}")
    if "dir" not in table or "to" not in table:
        raise where.error("watch", '[[watch]]: needs dir and to (to = "s3://BUCKET/PREFIX")')
    if not table["to"].startswith("s3://"):
        raise where.error("to", f"[[watch]] to: expected s3://BUCKET/PREFIX, got {table['to']!r}")
    return WatchTable(f"{table['dir']}={table['to']}", fields)


__all__ = ["FileConfig", "WatchTable", "load", "read_config_file"]
