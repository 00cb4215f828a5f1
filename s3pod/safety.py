"""Which local files the daemon may read and delete."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from s3po_client.errors import ConfigError, UnsafePathError
from s3po_client.job import Job
from s3po_client.queue import require_regular_file

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
        require_regular_file(real, shown=path)
        return real


def delete_file(job: Job, path: str) -> None:
    """Delete an uploaded job's local file; a failure is logged, the job still counts as done."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        logger.warning("deleted job=%s path=%s was gone already", job.id, path)
        return
    except OSError as exc:
        logger.error("could not delete job=%s path=%s: %s (the object is stored)", job.id, path, exc)
        return
    logger.info("deleted job=%s path=%s", job.id, path)
