"""Print the fault suite's figures as the Markdown table of docs/RELIABILITY.md.

    python tests/faults/report.py [build/fault-figures.jsonl]

Reads the JSON lines the scenarios append (see scenario.py), keeps the latest line of each
scenario variant, and prints one row per variant, then the totals of the figures that
must be 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = [
    ("jobs", "jobs"),
    ("verified", "verified"),
    ("lost", "**lost**"),
    ("deleted_unverified", "**deleted unverified**"),
    ("duplicates", "duplicates"),
    ("dead", "dead letters"),
    ("crashes", "**crashes**"),
    ("orphaned_uploads", "**orphaned uploads**"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("seconds", "s"),
]
MUST_BE_ZERO = ("lost", "deleted_unverified", "crashes", "orphaned_uploads")


def main(argv: list[str]) -> int:
    path = (
        Path(argv[1])
        if len(argv) > 1
        else Path(os.environ.get("S3PO_FAULT_FIGURES", ROOT / "build" / "fault-figures.jsonl"))
    )
    latest: dict[tuple[str, str, bool], dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            latest[(row["scenario"], row["variant"], row["full"])] = row
    rows = sorted(latest.values(), key=lambda r: (r["scenario"], not r["full"], r["variant"]))
    print("| scenario | variant | size | " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 3))
    for r in rows:
        cells = [str(r.get(name, "")) for name, _ in COLUMNS]
        print(f"| {r['scenario']} | {r['variant']} | {'full' if r['full'] else 'short'} | " + " | ".join(cells) + " |")
    totals = {name: sum(r.get(name, 0) for r in rows) for name in MUST_BE_ZERO}
    print()
    print(
        f"{len(rows)} variants; "
        + ", ".join(f"{name.replace('_', ' ')} = {n}" for name, n in totals.items())
        + f"; jobs = {sum(r['jobs'] for r in rows):,}; objects verified = {sum(r['verified'] for r in rows):,}"
    )
    return 1 if any(totals.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
