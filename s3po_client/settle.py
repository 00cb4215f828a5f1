"""Settling an uploaded file: stored → unchanged → deleted, one policy for the daemon, ``Connection`` and the CLI.

A local file is deleted only after its object is stored and verified, and only if it is
still the very file that was read: same identity, same size, same times (ctime included).
A file rewritten, replaced, swapped for a symlink or removed while it was sent is kept (and
uploaded again by whoever owns the retry), never deleted in a state that was not stored.

Two more rules hold everywhere:

- a file reached through a symlink (the path given names a symlink) is uploaded but never
  deleted: deleting the target would leave a dangling link, and the link's owner asked
  for the link's name, not for whatever it points to;
- the delete walks from the allowed directory down without following any symlink
  (:func:`~s3po_client.localfile.delete_unchanged`), so it never lands outside.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .localfile import delete_unchanged, ensure_unchanged

if TYPE_CHECKING:
    from .transfer.results import UploadResult

logger = logging.getLogger(__name__)


def check_unchanged(result: UploadResult) -> None:
    """Raise SourceChangedError unless the file ``result`` read is still there, unchanged."""
    if result.source is None or result.source_path is None:
        raise ValueError("only the result of a file upload has a source file")
    ensure_unchanged(result.source_path, result.source, bucket=result.bucket, key=result.key)


def through_symlink(given_path: str, real_path: str) -> bool:
    """Return whether ``given_path`` reached the file at ``real_path`` through a symlink of its own name.

    Symlinks among the directories above are not counted (``/tmp`` is one on some systems);
    the name itself resolving elsewhere is.
    """
    given = os.path.abspath(given_path)
    if given == real_path:  # the name given is the real path read: no symlink in it, nothing to resolve
        return False
    return os.path.join(os.path.realpath(os.path.dirname(given)), os.path.basename(given)) != real_path


def delete_uploaded(
    result: UploadResult,
    *,
    job_id: str = "-",
    given_path: str | None = None,
    allow_dirs: Sequence[str] = (),
) -> bool:
    """Delete the file ``result`` read if it is unchanged; True once deleted, False when it was kept.

    ``given_path`` is the path as the caller gave it (the job's ``path``): when it names a
    symlink the file is kept, and the reason logged. ``allow_dirs`` are the directories the
    file may be deleted in; the delete walks from the one holding it (from ``/`` when none
    are given) without following symlinks. False also when the unlink itself failed (logged).

    Raises SourceChangedError (and deletes nothing) when the file changed or vanished.
    """
    if result.source is None or result.source_path is None:
        raise ValueError("only the result of a file upload has a source file")
    if given_path is not None and through_symlink(given_path, result.source_path):
        logger.warning(
            "kept job=%s path=%s: it is a symlink (to %s); a file reached through a symlink is uploaded, never deleted",
            job_id,
            given_path,
            result.source_path,
        )
        return False
    return delete_unchanged(
        result.source_path, result.source, allow_dirs=allow_dirs, job_id=job_id, bucket=result.bucket, key=result.key
    )


__all__ = ["check_unchanged", "delete_uploaded", "through_symlink"]
