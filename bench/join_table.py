#!/usr/bin/env python3
"""Prints the markdown table of an `arlas bench join --json` result: a fresh actor joining
populations of N adapter members.

    python3 bench/join_table.py bench/results/join-2026-12-04T2218Z.json

"ready s" is spawn to /healthz 200 (the actor plays from then on); "members loaded s" is spawn to
the log line saying the assigned population members are loaded (they load while the attacker
phase plays). Median over the tries, [range].
"""

from __future__ import annotations

import json
import statistics
import sys


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def main(path: str) -> None:
    with open(path) as f:
        r = json.load(f)
    print(f"Adapter version {r['adapter_version_bytes']:,} B, base {r['base_version_bytes']:,} B: "
          f"**{r['adapter_over_base']:.4f}** of the base (LoRA rank {r['lora']['rank']}, "
          f"{len(r['lora']['targets'])} target modules), {r['repeats']} tries per population.\n")
    print("| members | ready s | members loaded s | checkpoints fetched | MB fetched | bases loaded |")
    print("|---:|---|---|---:|---:|---:|")
    for p in r["populations"]:
        runs = p["runs"]
        print(f"| {p['members']} | {cell([x['seconds'] for x in runs])} | "
              f"{cell([x['members_loaded_seconds'] for x in runs])} | "
              f"{runs[0]['checkpoints_fetched']} | {runs[0]['fetched_bytes'] / 1e6:.1f} | "
              f"{max(x['bases_loaded'] for x in runs)} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1])
