"""A process-wide malloc setting that keeps the engine's large buffers from fragmenting memory."""

from __future__ import annotations

#: glibc's mallopt parameter for the size from which malloc maps memory of its own
_M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 1024 * 1024


def return_large_buffers_to_the_os() -> bool:
    """Make glibc serve buffers of 1 MiB and more with mmap, so freeing one returns it to the OS.

    Parts and ranges are buffers of several MiB, allocated and freed by many threads. By
    default glibc raises its mmap threshold to the size of the last such buffer freed and
    serves the next ones from per-thread heaps, which fragment: a large compressed upload
    and download peak far higher that way (tests/client/test_transfer_memory.py,
    docs/BENCHMARKS.md). The setting is process-wide: it applies to the whole program that
    uses the engine, and only changes where large blocks come from. Returns False where
    there is no glibc (nothing to do).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER_BYTES))
