#!/usr/bin/env python3
"""Prints the markdown table of bench/iteration.sh's records: one ARLAS iteration per build.

    python3 bench/iteration_table.py bench/results/iteration-2026-12-04.jsonl

One row per (side, setting): the median over its runs, with the range in brackets when there
are several. "iteration s" is the iteration's own seconds (the run's metrics record or the
bench's `seconds`); "process s" and "peak RSS" are the whole process's, model loading included
(/usr/bin/time). "rollout s" is the part of the iteration spent playing both phases (the
record's `phase_seconds.rollout`; "—" in records from before it was measured). Speed-ups are
base over new, medians. Issue 13's goals: >= 5x faster than the
base, and the whole process with both players SmolLM2 at <= 4 GB peak.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict

from records import records

GB = 1e9


def fmt(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    v = [x / scale for x in values]
    med = f"{statistics.median(v):.{digits}f}{unit}"
    if len(v) > 1:
        med += f" [{min(v):.{digits}f}–{max(v):.{digits}f}]"
    return med


def main(paths: list[str]) -> None:
    rows: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in records(paths):
        rows[(r["side"], r["setting"], r["commit"])].append(r)
    base = [r for (side, _, _), rs in rows.items() if side == "base" for r in rs]
    base_it = statistics.median(r["seconds"] for r in base) if base else None
    base_proc = statistics.median(r["process_seconds"] for r in base) if base else None
    print("| build | setting | runs | episodes | sampled tokens | iteration s | rollout s | process s | "
          "peak RSS | prefilled tokens | trained tokens | iteration speed-up | process speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (side, setting, commit), rs in rows.items():
        it = [r["seconds"] for r in rs]
        proc = [r["process_seconds"] for r in rs]
        rss = [r["process_peak_rss_bytes"] for r in rs]
        speed_it = speed_proc = ""
        if side != "base" and base_it:
            speed_it = f"{base_it / statistics.median(it):.2f}x"
            speed_proc = f"{base_proc / statistics.median(proc):.2f}x"
        prefilled = rs[0].get("prefilled_tokens") or "—"
        trained = rs[0].get("trained_tokens") or "—"
        sampled = rs[0].get("sampled_tokens") or "—"
        phases = [r["phase_seconds"]["rollout"] for r in rs if r.get("phase_seconds")]
        rollout = fmt(phases) if phases else "—"
        print(f"| {side} `{commit}` | {setting} | {len(rs)} | {rs[0]['episodes']} | {sampled} | "
              f"{fmt(it)} | {rollout} | {fmt(proc)} | {fmt(rss, ' GB', GB, 2)} | {prefilled} | {trained} | "
              f"{speed_it} | {speed_proc} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
