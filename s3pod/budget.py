"""A bound on the bytes all uploads of one daemon hold in memory at once."""

from __future__ import annotations

import threading

from s3po_client.settings import TransferSettings
from s3po_client.transfer.parts import part_size_for

MiB = 1024 * 1024

#: What a multipart upload holds beside its parts: its part threads and connections, and
#: the allocator's slack around buffers of a part's size (tests/daemon/test_budget.py
#: checks the sum against the daemon's resident memory).
MULTIPART_OVERHEAD_BYTES = 4 * MiB


def upload_memory_bytes(size_bytes: int, settings: TransferSettings) -> int:
    """Return the most an upload of a ``size_bytes`` file holds in memory with ``settings``.

    A body below the multipart threshold is held whole. A multipart upload first reads
    ``multipart_threshold_bytes`` (to decide single PUT or multipart) and holds them while
    its first parts are copied out of them; that buffer is freed once cut, and from then on
    it holds ``max_concurrency`` parts in flight plus the one being read; and
    :data:`MULTIPART_OVERHEAD_BYTES` besides. Parts grow past 10,000 × ``part_size_bytes``,
    and so does this. With the defaults: the larger of 16 + 2 × 8 MiB and 5 × 8 MiB, plus
    4 MiB, so 44 MiB for any file up to 78 GiB.
    """
    threshold = settings.multipart_threshold_bytes
    if size_bytes < threshold:
        return max(1, size_bytes)
    part = part_size_for(1, base_bytes=settings.part_size_bytes, size_hint=size_bytes)
    in_flight = settings.max_concurrency + 1
    cut_from_first = min(-(-threshold // part), in_flight)
    return max(threshold + cut_from_first * part, in_flight * part) + MULTIPART_OVERHEAD_BYTES


class MemoryBudget:
    """Lets uploads start only while their memory fits in ``limit_bytes``.

    A job reserves :func:`upload_memory_bytes` of its file's size before its upload and
    gives it back after, so many small files run side by side while large multipart
    uploads queue up for memory. One reservation larger than the whole budget is cut to it
    (it then runs alone). A file that grows past the multipart threshold after it was
    measured has its reservation raised when its upload turns multipart
    (:meth:`Reservation.grow_to`).
    """

    def __init__(self, limit_bytes: int, settings: TransferSettings) -> None:
        self.limit_bytes = limit_bytes
        self.settings = settings
        self.in_use_bytes = 0
        #: uploads waiting for room
        self.waiting = 0
        self._cond = threading.Condition()

    def estimate(self, size_bytes: int) -> int:
        """Return what an upload of a ``size_bytes`` file reserves."""
        return max(1, min(upload_memory_bytes(size_bytes, self.settings), self.limit_bytes))

    def reserve(self, size_bytes: int, stop: threading.Event) -> Reservation | None:
        """Wait until an upload of a ``size_bytes`` file fits, and reserve it; None if ``stop`` is set first."""
        nbytes = self.estimate(size_bytes)
        return Reservation(self, nbytes) if self.acquire(nbytes, stop) else None

    def acquire(self, nbytes: int, stop: threading.Event) -> bool:
        """Wait until ``nbytes`` fit, and take them; False (nothing taken) if ``stop`` is set first."""
        with self._cond:
            self.waiting += 1
            try:
                while self.in_use_bytes + nbytes > self.limit_bytes:
                    if stop.is_set():
                        return False
                    self._cond.wait(timeout=0.2)
            finally:
                self.waiting -= 1
            self.in_use_bytes += nbytes
            return True

    def take_now(self, nbytes: int) -> None:
        """Count ``nbytes`` more at once, past the limit if need be: an upload holds them already.

        Waiting here could deadlock (every upload holding some, each waiting for more); the
        uploads that start next wait instead, until the total fits again.
        """
        with self._cond:
            self.in_use_bytes += nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.in_use_bytes -= nbytes
            self._cond.notify_all()


class Reservation:
    """The bytes one upload holds in a :class:`MemoryBudget`; give them back with :meth:`release`."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self.budget = budget
        self.nbytes = nbytes

    def grow_to(self, size_bytes: int) -> None:
        """Raise the reservation to what an upload of a ``size_bytes`` file holds, if that is more."""
        extra = self.budget.estimate(size_bytes) - self.nbytes
        if extra > 0:
            self.budget.take_now(extra)
            self.nbytes += extra

    def release(self) -> None:
        self.budget.release(self.nbytes)
        self.nbytes = 0


__all__ = ["MiB", "MemoryBudget", "Reservation", "upload_memory_bytes"]
