"""What a spool directory is: where it is, where its files go, which files it takes.

``--watch DIR=s3://BUCKET/PREFIX`` gives one :class:`WatchSpec`; the ``--watch-*`` options
give every watch the same settings; a config file's ``[[watch]]`` table gives each its own
(every field here is a plain value it can set; headers and a destination only there).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, replace

from s3po_client.errors import ConfigError
from s3po_client.job import Codec
from s3po_client.localfile import inside

#: Names never taken: a program's temporary and partial files, hidden files and directories.
DEFAULT_IGNORES = ("*.tmp", ".*", "*.part")
#: How long a file found by a scan must stay the same (size and mtime) before it is taken.
DEFAULT_QUIET_S = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class WatchSpec:
    """One watched directory: each complete file under it becomes a job for ``bucket``.

    The key is ``key_prefix`` + the file's path relative to ``directory`` (``/``-separated).
    """

    directory: str
    bucket: str
    key_prefix: str = ""
    compress: Codec | None = None
    delete: bool = True
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    prune_empty_dirs: bool = False
    #: headers each of its jobs gets (name, value pairs: a config file's ``headers`` table)
    headers: tuple[tuple[str, str], ...] = ()
    #: the destination its jobs go through (a ``[destinations.NAME]`` of the config file); None: the default
    destination: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ConfigError(f"watch {self.directory!r}: no bucket")
        if self.key_prefix.startswith("/"):
            raise ConfigError(f"watch {self.directory!r}: key prefix must not start with '/'")

    @classmethod
    def parse(cls, text: str, **settings: object) -> WatchSpec:
        """Return the watch ``DIR=s3://BUCKET/PREFIX`` describes; ``settings`` give the other fields.

        A prefix that does not end with ``/`` gets one: ``s3://b/logs`` puts ``a.log`` at ``logs/a.log``.
        """
        directory, sep, target = text.rpartition("=s3://")
        if not sep or not directory:
            raise ConfigError(f"--watch expects DIR=s3://BUCKET/PREFIX, got {text!r}")
        bucket, _, prefix = target.partition("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(directory=directory, bucket=bucket, key_prefix=prefix, **settings)  # type: ignore[arg-type]

    def checked(self, allow_dirs: tuple[str, ...]) -> WatchSpec:
        """Return this watch with its directory resolved; ConfigError if s3pod cannot watch it.

        The directory must exist, be readable and searchable, and lie inside an allowed
        directory when there are any (the daemon would refuse to read its files otherwise).
        """
        real = os.path.realpath(self.directory)
        if not os.path.isdir(real):
            raise ConfigError(f"watched directory {self.directory!r} does not exist or is not a directory")
        if not os.access(real, os.R_OK | os.X_OK):
            raise ConfigError(f"watched directory {self.directory!r} is not readable")
        if allow_dirs and not inside(real, allow_dirs):
            raise ConfigError(f"watched directory {self.directory!r} is not inside any --allow-dir")
        return replace(self, directory=real)

    def wants(self, relpath: str) -> bool:
        """Return whether the file at ``relpath`` (relative to the directory) is to be taken.

        Never a name of :data:`DEFAULT_IGNORES` (nor anything under such a directory); then
        it must match an ``include`` pattern when there are any, and no ``exclude`` pattern.
        A pattern matches the relative path or the file's name.
        """
        parts = relpath.split("/")
        if any(fnmatch.fnmatchcase(part, pattern) for part in parts for pattern in DEFAULT_IGNORES):
            return False
        if self.include and not _matches(relpath, self.include):
            return False
        return not _matches(relpath, self.exclude)

    @staticmethod
    def ignores_dir(name: str) -> bool:
        """Return whether a directory of this name is skipped whole (a hidden or temporary one)."""
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in DEFAULT_IGNORES)

    def key_for(self, relpath: str) -> str:
        return self.key_prefix + relpath

    def __str__(self) -> str:
        return f"{self.directory}=s3://{self.bucket}/{self.key_prefix}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SpoolSettings:
    """The watches and how they are watched: inotify (``poll_s`` None) or a scan every ``poll_s``."""

    watches: tuple[WatchSpec, ...] = ()
    poll_s: float | None = None
    quiet_s: float = DEFAULT_QUIET_S

    def __post_init__(self) -> None:
        if self.poll_s is not None and self.poll_s <= 0:
            raise ConfigError(f"--watch-poll must be positive, got {self.poll_s}")
        if self.quiet_s < 0:
            raise ConfigError(f"--watch-quiet must not be negative, got {self.quiet_s}")

    def checked(self, allow_dirs: tuple[str, ...]) -> SpoolSettings:
        """Return these settings with every directory checked and resolved (see :meth:`WatchSpec.checked`)."""
        watches = tuple(w.checked(allow_dirs) for w in self.watches)
        for i, w in enumerate(watches):
            for other in watches[i + 1 :]:
                if inside(w.directory, (other.directory,)) or inside(other.directory, (w.directory,)):
                    raise ConfigError(f"watched directories {w.directory!r} and {other.directory!r} overlap")
        return SpoolSettings(watches=watches, poll_s=self.poll_s, quiet_s=self.quiet_s)


def _matches(relpath: str, patterns: tuple[str, ...]) -> bool:
    name = relpath.rpartition("/")[2]
    return any(fnmatch.fnmatchcase(relpath, p) or fnmatch.fnmatchcase(name, p) for p in patterns)
