"""Which local files the daemon may read and delete."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from s3po_client.errors import ConfigError, JobError, UnsafePathError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """Allowed directories (resolved once); empty means any file the daemon can reach."""

    allow_dirs: tuple[str, ...] = ()

    @classmethod
    def from_dirs(cls, dirs: tuple[str, ...] | list[str]) -> PathPolicy:
        resolved = []
        for d in dirs:
            real = os.path.realpath(d)
            if not os.path.isdir(real):
                raise ConfigError(f"--allow-dir {d!r} is not a directory")
            resolved.append(real)
        return cls(tuple(resolved))

    def check(self, path: str) -> str:
        """Return the real path of the job's file; raise JobError if the daemon must not touch it.

        The path is resolved with realpath, so a symlink or ``..`` that leads out of every
        allowed directory is refused, and what is checked is what is read.
        """
        real = os.path.realpath(path)
        if self.allow_dirs and not any(
            real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in self.allow_dirs
        ):
            raise UnsafePathError(
                f"path {path!r} resolves to {real!r}, outside the allowed directories "
                f"({', '.join(self.allow_dirs)})"
            )
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            raise JobError(f"path {path!r} does not exist") from None
        except OSError as exc:
            raise JobError(f"path {path!r} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise JobError(f"path {path!r} is not a regular file")
        return real
