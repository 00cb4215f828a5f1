"""The files the benchmark sends: random bytes, log lines, many small files, and hard links for s3pod.

s3pod deletes each file it has stored (its default), so it is handed hard links to the
data, made untimed before each run: the daemon deletes the link and the data stays for
the next tool.
"""

from __future__ import annotations

import os
from pathlib import Path

from compression import make_logs

MiB = 1024 * 1024
#: the log text is this block written again and again: 16 MiB is far beyond any gzip
#: window (32 KiB), so the compressors see it as new text, and it takes seconds, not minutes, to make
LOG_BLOCK_BYTES = 16 * MiB


def random_file(path: Path, size: int) -> Path:
    """Write ``size`` random bytes to ``path`` (incompressible: every tool sends every byte)."""
    if path.exists() and path.stat().st_size == size:
        return path
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 16 * MiB)
            out.write(os.urandom(n))
            left -= n
    return path


def log_file(path: Path, size: int) -> Path:
    """Write ``size`` bytes of log-like text to ``path`` (the data of ``bench/compression.py``)."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = make_logs(min(size, LOG_BLOCK_BYTES))
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, len(block))
            out.write(block[:n])
            left -= n
    return path


def small_files(folder: Path, count: int, size: int) -> list[Path]:
    """Write ``count`` files of ``size`` random bytes each into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        f = folder / f"f{i:05d}.bin"
        if not (f.exists() and f.stat().st_size == size):
            f.write_bytes(os.urandom(size))
        files.append(f)
    return files


def hard_links(files: list[Path], folder: Path) -> list[Path]:
    """Return a new hard link in ``folder`` to each of ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for f in files:
        link = folder / f.name
        os.link(f, link)
        links.append(link)
    return links
