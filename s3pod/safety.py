"""Which local files the daemon may read and delete."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from s3po_client.errors import ConfigError
from s3po_client.localfile import open_checked


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

    def open(self, path: str) -> tuple[BinaryIO, str]:
        """Open the job's file for reading; return it and its real path, or raise JobError.

        The check is made on the opened descriptor (``localfile.open_checked``): a symlink or
        ``..`` that leads out of every allowed directory is refused, and so is a name swapped
        for a symlink between the check and the read.
        """
        return open_checked(path, allow_dirs=self.allow_dirs)

    def check(self, path: str) -> str:
        """Return the real path of the job's file; raise JobError if the daemon must not touch it."""
        file, real = self.open(path)
        file.close()
        return real
