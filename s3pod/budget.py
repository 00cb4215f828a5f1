"""A bound on the bytes all uploads of one daemon hold in memory at once."""

from __future__ import annotations

import threading

from s3po_client.settings import TransferSettings
from s3po_client.transfer.parts import part_size_for

MiB = 1024 * 1024


def upload_memory_bytes(size_bytes: int, settings: TransferSettings) -> int:
    """Return the most an upload of a ``size_bytes`` file holds in memory with ``settings``.

    A body below the multipart threshold is held whole. A multipart upload holds the
    first ``multipart_threshold_bytes`` read (to decide single PUT or multipart) while its
    first parts are cut from them, then ``max_concurrency`` parts in flight plus the one
    being read; parts grow past 10,000 × ``part_size_bytes``, and so does this. With the
    defaults: 16 MiB + 5 × 8 MiB = 56 MiB for any file up to 78 GiB.
    """
    if size_bytes < settings.multipart_threshold_bytes:
        return max(1, size_bytes)
    part = part_size_for(1, base_bytes=settings.part_size_bytes, size_hint=size_bytes)
    return settings.multipart_threshold_bytes + (settings.max_concurrency + 1) * part


class MemoryBudget:
    """Lets uploads start only while their memory fits in ``limit_bytes``.

    A job reserves :func:`upload_memory_bytes` before its upload and gives it back after,
    so many small files run side by side while large multipart uploads queue up for
    memory. One reservation larger than the whole budget is cut to it (it then runs alone).
    """

    def __init__(self, limit_bytes: int, settings: TransferSettings) -> None:
        self.limit_bytes = limit_bytes
        self.settings = settings
        self.in_use_bytes = 0
        self._cond = threading.Condition()

    def estimate(self, size_bytes: int) -> int:
        """Return what an upload of a ``size_bytes`` file reserves."""
        return max(1, min(upload_memory_bytes(size_bytes, self.settings), self.limit_bytes))

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        """Wait until ``nbytes`` fit, and take them; False (nothing taken) if ``stop`` is set first."""
        with self._cond:
            while self.in_use_bytes + nbytes > self.limit_bytes:
                if stop.is_set():
                    return False
                self._cond.wait(timeout=0.2)
            self.in_use_bytes += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.in_use_bytes -= nbytes
            self._cond.notify_all()
