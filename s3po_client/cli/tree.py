"""What the arguments of ``s3po`` name: S3 URLs, local files and trees, and which of them to take.

Pure functions and small values (no S3, no Redis): parsing ``s3://BUCKET/KEY`` and
``s3://BUCKET/PREFIX/``, walking a directory for its regular files, the ``--exclude`` /
``--include`` filters, and mapping keys to local paths safely.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


class BadArgument(ValueError):
    """An argument that names nothing s3po can use (a usage error, exit status 2)."""


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/key``; a ``key`` that is empty or ends with ``/`` names a prefix."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, value: str) -> S3Url:
        """Return the bucket and key of ``value``; raise BadArgument for anything but ``s3://BUCKET[/KEY]``.

        >>> S3Url.parse("s3://logs/2024/06/")
        S3Url(bucket='logs', key='2024/06/')
        """
        if not value.startswith("s3://"):
            raise BadArgument(f"expected s3://BUCKET/KEY, got {value!r}")
        bucket, _, key = value[5:].partition("/")
        if not bucket or any(c.isspace() for c in bucket) or key.startswith("/"):
            raise BadArgument(f"expected s3://BUCKET/KEY, got {value!r}")
        return cls(bucket, key)

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def join(self, relative: str) -> S3Url:
        """Return the object named ``relative`` (a ``/``-separated path) under this prefix."""
        return S3Url(self.bucket, self.key + relative)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Filters:
    """``--exclude`` / ``--include`` globs, as the AWS CLI applies them.

    Every file is taken unless a filter says otherwise; the filters are applied in the
    order given and the last one that matches decides. A glob is matched against the path
    relative to the directory (or prefix) given, with ``/`` between names; ``*`` and ``?``
    match across ``/`` too.

    >>> Filters((("exclude", "*"), ("include", "*.log"))).accepts("app/today.log")
    True
    """

    rules: tuple[tuple[str, str], ...] = ()

    def accepts(self, relative: str) -> bool:
        taken = True
        for kind, pattern in self.rules:
            if fnmatch.fnmatchcase(relative, pattern):
                taken = kind == "include"
        return taken


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One file to upload: its path (as found), the ``/``-separated name under its root, and its size."""

    path: str
    relative: str
    size: int
    #: reached through a symlink (``--follow-symlinks``): uploaded, but never deleted
    via_symlink: bool = False


@dataclass(frozen=True, slots=True)
class Unusable:
    """Something found in a tree that is not uploaded, and why (a failure when ``failed``)."""

    path: str
    relative: str
    reason: str
    failed: bool


def walk(root: str, *, follow_symlinks: bool = False, filters: Filters = Filters()) -> Iterator[LocalFile | Unusable]:
    """Yield every regular file under the directory ``root`` (sorted by name), and what was left out.

    Symlinks (to files or directories) are left out unless ``follow_symlinks``; then each
    directory is entered once, so a loop of links ends. Sockets, FIFOs and devices are left
    out. A directory that cannot be read, or a broken symlink that was to be followed, is
    an ``Unusable`` marked failed; a file filtered out is not yielded at all.
    """
    seen: set[tuple[int, int]] = set()

    def visit(directory: str, relative: str, via: bool) -> Iterator[LocalFile | Unusable]:
        try:
            st = os.stat(directory)
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Unusable(directory, relative, f"cannot read directory {directory!r}: {exc.strerror}", True)
            return
        for entry in entries:
            name = f"{relative}{entry.name}"
            try:
                link = entry.is_symlink()
                if link and not follow_symlinks:
                    if filters.accepts(name):
                        yield Unusable(entry.path, name, "a symlink (--follow-symlinks to follow it)", False)
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                yield Unusable(entry.path, name, f"cannot read {entry.path!r}: {exc.strerror}", True)
                continue
            if stat.S_ISDIR(st.st_mode):
                yield from visit(entry.path, f"{name}/", via or link)
            elif not filters.accepts(name):
                continue
            elif stat.S_ISREG(st.st_mode):
                yield LocalFile(entry.path, name, st.st_size, via or link)
            else:
                yield Unusable(entry.path, name, "not a regular file", False)

    yield from visit(root, "", False)


def local_target(directory: str, relative_key: str) -> str:
    """Return where the object named ``relative_key`` under a prefix goes in ``directory``.

    Raises BadArgument for a key that would land outside ``directory`` (``..``, an empty
    or ``.`` name, a leading ``/``): a store's listing is not trusted to stay inside.

    >>> local_target("/tmp/out", "2024/06/app.log")
    '/tmp/out/2024/06/app.log'
    """
    names = relative_key.split("/")
    if relative_key.startswith("/") or any(n in ("", ".", "..") for n in names) or "\0" in relative_key:
        raise BadArgument(f"key part {relative_key!r} is not a safe local path; not downloaded")
    return os.path.join(directory, *names)


def filter_order(args: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Return the ``--exclude`` / ``--include`` options of ``args`` in the order given (as the AWS CLI keeps it).

    >>> filter_order(["--exclude", "*", "x", "--include=*.txt"])
    (('exclude', '*'), ('include', '*.txt'))
    """
    rules: list[tuple[str, str]] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        for kind in ("exclude", "include"):
            flag = f"--{kind}"
            if arg == flag:
                value = next(it, None)
                if value is not None:
                    rules.append((kind, value))
            elif arg.startswith(flag + "="):
                rules.append((kind, arg[len(flag) + 1 :]))
    return tuple(rules)


__all__ = ["BadArgument", "Filters", "LocalFile", "S3Url", "Unusable", "filter_order", "local_target", "walk"]
