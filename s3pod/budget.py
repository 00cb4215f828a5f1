"""A bound on the bytes all uploads of one daemon hold in memory at once."""

from __future__ import annotations

import threading

MiB = 1024 * 1024

#: What one upload holds at most with the engine's default settings: (4 parts in flight +
#: 1 being read) × 8 MiB parts (see ``s3po_client.settings.TransferSettings``).
UPLOAD_MEMORY_BYTES = 40 * MiB


class MemoryBudget:
    """Lets uploads start only while their estimated memory fits in ``limit_bytes``.

    A job reserves ``min(file size, per_upload_bytes)`` before its upload and gives it back
    after, so many small files run side by side while large multipart uploads queue up for
    memory. One reservation larger than the whole budget is cut to it (it then runs alone).
    """

    def __init__(self, limit_bytes: int, per_upload_bytes: int = UPLOAD_MEMORY_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self.per_upload_bytes = per_upload_bytes
        self.in_use_bytes = 0
        self._cond = threading.Condition()

    def estimate(self, size_bytes: int) -> int:
        """Return what an upload of a ``size_bytes`` file reserves."""
        return max(1, min(size_bytes, self.per_upload_bytes, self.limit_bytes))

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
