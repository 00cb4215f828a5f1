"""Settling an uploaded file: stored → unchanged → deleted, one policy for the daemon, ``Connection`` and the CLI.

A local file is deleted only after its object is stored and verified, and only if it is
still the very file that was read: same identity, same size, same times. A file rewritten,
replaced, swapped for a symlink or removed while it was sent is kept (and uploaded again
by whoever owns the retry), never deleted in a state that was not stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .localfile import delete_unchanged, ensure_unchanged

if TYPE_CHECKING:
    from .transfer.engine import UploadResult


def check_unchanged(result: UploadResult) -> None:
    """Raise SourceChangedError unless the file ``result`` read is still there, unchanged."""
    if result.source is None or result.source_path is None:
        raise ValueError("only the result of a file upload has a source file")
    ensure_unchanged(result.source_path, result.source, bucket=result.bucket, key=result.key)


def delete_uploaded(result: UploadResult, *, job_id: str = "-") -> bool:
    """Delete the file ``result`` read if it is unchanged; True once deleted, False if the unlink failed.

    Raises SourceChangedError (and deletes nothing) when the file changed or vanished.
    """
    if result.source is None or result.source_path is None:
        raise ValueError("only the result of a file upload has a source file")
    return delete_unchanged(result.source_path, result.source, job_id=job_id, bucket=result.bucket, key=result.key)


__all__ = ["check_unchanged", "delete_uploaded"]
