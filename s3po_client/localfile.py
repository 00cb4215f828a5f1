"""The local file an upload reads and may delete: open it safely, tell whether it changed, delete it.

One home for three rules that the daemon, ``Connection`` and the ``s3po`` command share:

- a file is read through one descriptor, opened with ``O_NOFOLLOW``; what is checked
  (regular file, inside the allowed directories) is that descriptor, not a name that
  could be swapped for a symlink between the check and the read;
- a file is "unchanged" while its size, mtime, ctime, inode and device are those seen when
  its upload began (ctime because a rewrite in place can restore size and mtime, as
  ``rsync --inplace -t`` and ``touch -r`` do, but nothing can set ctime back);
- a file is deleted only if the name still refers to that same unchanged file
  (:func:`delete_unchanged`), so a symlink or a new file put in its place survives; the
  name is reached from the allowed directory down through descriptors that follow no
  symlink, so a directory swapped for a symlink cannot turn the delete into one outside.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .errors import JobError, SourceChangedError, UnsafePathError

logger = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: Flags for reading a job's file: never through a final symlink, never blocking on a FIFO.
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
#: Linux's descriptor that names a file without opening it (0 where there is none)
_PATH_ONLY = getattr(os, "O_PATH", 0) if os.path.isdir("/proc/self/fd") else 0
#: Flags for each directory on the way to a file to delete: a directory, never a symlink.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC


@dataclass(frozen=True, slots=True)
class FileStat:
    """What identifies one version of a local file: size, mtime, inode, device and ctime.

    ctime (the inode's change time) moves on every write and every metadata change, and
    no system call sets it back: it is what tells a rewrite in place whose size and mtime
    were restored. A record saved without it (``ctime_ns`` 0) never matches a file.
    """

    size: int
    mtime_ns: int
    inode: int
    device: int = 0
    ctime_ns: int = 0

    @classmethod
    def of(cls, path: str, *, follow_symlinks: bool = True) -> FileStat:
        """Return the stat of ``path`` (raises FileNotFoundError when it is gone)."""
        return cls.from_stat(os.stat(path, follow_symlinks=follow_symlinks))

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileStat:
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, device=st.st_dev, ctime_ns=st.st_ctime_ns)


def inside(real: str, dirs: Sequence[str]) -> bool:
    """Return whether the resolved path ``real`` is one of ``dirs`` or below one of them."""
    return any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in dirs)


def _descriptor_path(fd: int, fallback: str) -> str:
    """Return the real path of the file open as ``fd`` (Linux: /proc/self/fd), else ``fallback``'s realpath."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)


def open_checked(path: str, *, allow_dirs: Sequence[str] = (), shown: str | None = None) -> tuple[BinaryIO, str]:
    """Open the regular file at ``path`` for reading; return it and its real path.

    What is checked — a regular file, whose real path is inside ``allow_dirs`` when any are
    given — is the file that is read, never a name that could be swapped between the check
    and the read, and nothing outside ``allow_dirs`` (a FIFO, a device) is ever opened for
    reading. Symlinks inside the allowed directories are fine. Raises JobError
    (UnsafePathError for a path outside ``allow_dirs``) naming ``shown`` (default ``path``).
    """
    name = shown if shown is not None else path
    if _PATH_ONLY:
        held = _open_held(path, name, allow_dirs)
        if held is not None:
            return held
    return _open_resolved(path, name, allow_dirs)


def _open_held(path: str, name: str, allow_dirs: Sequence[str]) -> tuple[BinaryIO, str] | None:
    """Linux: pin the file with an ``O_PATH`` descriptor, check it, then open that very file for reading.

    An ``O_PATH`` descriptor opens nothing (no device or FIFO is touched), the kernel
    resolves the name once, and ``/proc/self/fd`` tells where it landed: no ``realpath``
    walk of every component. None when the name itself is a symlink, or ``/proc`` cannot
    say: :func:`_open_resolved` decides then.
    """
    try:
        pin = os.open(path, _PATH_ONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        raise JobError(f"path {name!r} does not exist") from None
    except OSError:
        return None  # a loop, a name too long...: said the usual way
    try:
        st = os.fstat(pin)
        if stat.S_ISLNK(st.st_mode):
            return None
        try:
            real = os.readlink(f"/proc/self/fd/{pin}")
        except OSError:
            return None
        if allow_dirs and not inside(real, allow_dirs):
            raise UnsafePathError(
                f"path {name!r} resolves to {real!r}, outside the allowed directories ({', '.join(allow_dirs)})"
            )
        if not stat.S_ISREG(st.st_mode):
            raise JobError(f"path {name!r} is not a regular file")
        try:  # the magic link reopens the inode pinned, whatever its name has become since
            fd = os.open(f"/proc/self/fd/{pin}", os.O_RDONLY | _CLOEXEC)
        except OSError as exc:
            raise JobError(f"path {name!r} cannot be read: {exc.strerror}") from None
        # A buffer size given: no isatty() ioctl to choose one, a file is not a terminal.
        return os.fdopen(fd, "rb", buffering=io.DEFAULT_BUFFER_SIZE), real
    finally:
        os.close(pin)


def _open_resolved(path: str, name: str, allow_dirs: Sequence[str]) -> tuple[BinaryIO, str]:
    """Resolve ``path`` (``realpath``), open the resolved name with ``O_NOFOLLOW``, then check the descriptor.

    If the resolved name was swapped for a symlink since, the open fails.
    """
    try:
        real = os.path.realpath(path)
    except OSError as exc:  # a link swapped for a file mid-resolution: readlink says EINVAL
        raise JobError(f"path {name!r} cannot be resolved (changed while it was checked): {exc.strerror}") from None
    if allow_dirs and not inside(real, allow_dirs):
        raise UnsafePathError(
            f"path {name!r} resolves to {real!r}, outside the allowed directories ({', '.join(allow_dirs)})"
        )
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        raise JobError(f"path {name!r} does not exist") from None
    except OSError as exc:
        if os.path.islink(real):
            raise UnsafePathError(f"path {name!r} was replaced by a symlink while it was checked") from None
        raise JobError(f"path {name!r} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JobError(f"path {name!r} is not a regular file")
        opened = _descriptor_path(fd, real)
        if allow_dirs and not inside(opened, allow_dirs):
            raise UnsafePathError(
                f"path {name!r} opened {opened!r}, outside the allowed directories ({', '.join(allow_dirs)})"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), opened
    except BaseException:
        os.close(fd)
        raise


def require_regular_file(path: str, shown: str | None = None) -> None:
    """Raise JobError unless ``path`` is an existing regular file (``shown`` names it in the message)."""
    name = shown if shown is not None else path
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise JobError(f"path {name!r} does not exist") from None
    except OSError as exc:
        raise JobError(f"path {name!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise JobError(f"path {name!r} is not a regular file")


def ensure_unchanged(path: str, expected: FileStat, *, bucket: str = "", key: str = "") -> None:
    """Raise SourceChangedError unless the name ``path`` (not followed) is still the file ``expected`` describes."""
    try:
        now = FileStat.of(path, follow_symlinks=False)
    except FileNotFoundError:
        raise SourceChangedError(f"{path!r} vanished during the upload", bucket=bucket, key=key) from None
    if now != expected:
        raise SourceChangedError(
            f"{path!r} changed during the upload; it is kept and uploaded again", bucket=bucket, key=key
        )


def delete_unchanged(
    path: str,
    expected: FileStat,
    *,
    allow_dirs: Sequence[str] = (),
    job_id: str = "-",
    bucket: str = "",
    key: str = "",
) -> bool:
    """Delete the uploaded file at the real path ``path`` if it is still the version ``expected`` describes.

    The file's directory is reached from the allowed directory holding ``path`` (from ``/``
    when ``allow_dirs`` is empty) one component at a time, each opened with
    ``O_DIRECTORY|O_NOFOLLOW``; the file is compared (``fstatat``, not followed) and
    unlinked relative to that descriptor. A component swapped for a symlink fails the
    walk, so no delete ever lands outside.

    Raises SourceChangedError (and deletes nothing) when the name now refers to something
    else: the file was rewritten, replaced, swapped for a symlink, removed, or a directory
    on its path was. Returns False when the file was not deleted for another reason
    (outside ``allow_dirs``, or the unlink failed: logged, the object is stored, the file
    stays), True once the file is deleted.
    """
    parent, name = os.path.split(path)
    root = _allowed_root(parent, allow_dirs)
    if root is None or not name:
        logger.error("not deleting job=%s path=%s: outside the allowed directories", job_id, path)
        return False
    try:
        fd = _open_dir_below(root, parent)
    except OSError as exc:
        raise SourceChangedError(
            f"{path!r}: a directory on its path was replaced or removed during the upload ({exc.strerror}); "
            "the file is kept",
            bucket=bucket,
            key=key,
        ) from None
    try:
        try:
            now = FileStat.from_stat(os.stat(name, dir_fd=fd, follow_symlinks=False))
        except FileNotFoundError:
            raise SourceChangedError(f"{path!r} vanished during the upload", bucket=bucket, key=key) from None
        if now != expected:
            raise SourceChangedError(
                f"{path!r} changed during the upload; it is kept and uploaded again", bucket=bucket, key=key
            )
        os.unlink(name, dir_fd=fd)
    except FileNotFoundError:
        raise SourceChangedError(f"{path!r} vanished during the upload", bucket=bucket, key=key) from None
    except OSError as exc:
        logger.error("could not delete job=%s path=%s: %s (the object is stored)", job_id, path, exc.strerror)
        return False
    finally:
        os.close(fd)
    logger.info("deleted job=%s path=%s", job_id, path)
    return True


def _allowed_root(parent: str, allow_dirs: Sequence[str]) -> str | None:
    """Return the allowed directory (the deepest) holding the directory ``parent``; ``/`` when none are set."""
    if not allow_dirs:
        return os.sep
    holding = [d for d in allow_dirs if inside(parent, [d])]
    return max(holding, key=len) if holding else None


def _open_dir_below(root: str, directory: str) -> int:
    """Return a descriptor of ``directory``, opened from ``root`` down one component at a time, following no symlink.

    ``root`` itself is opened as configured (the allowed directory is trusted).
    """
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    try:
        below = os.path.relpath(directory, root)
        for part in [] if below == os.curdir else below.split(os.sep):
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["FileStat", "delete_unchanged", "ensure_unchanged", "inside", "open_checked", "require_regular_file"]
