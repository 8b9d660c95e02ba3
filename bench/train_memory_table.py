#!/usr/bin/env python3
"""Prints the markdown table of bench/train_memory.sh's records: one SmolLM2 training step.

    python3 bench/train_memory_table.py bench/results/train-memory-2026-12-05.jsonl

One row per record: batch, sequence length, LoRA rank (or full fine-tuning), activation
checkpointing, the whole process's peak RSS (/usr/bin/time, model loading included) and the
step's seconds. Issue 13's goal: a 1,024-token step well under 8.3 GB (4614604's full
fine-tuning step).
"""

from __future__ import annotations

import sys

from records import records


def main(paths: list[str]) -> None:
    print("| build | batch x tokens | trains | activation checkpointing | peak RSS | step s |")
    print("|---|---|---|---|---|---|")
    for r in records(paths):
        rank = r.get("lora_rank")
        trains = f"LoRA rank {rank}" if rank else "all weights"
        ckpt = "on" if r.get("activation_checkpointing") else "off"
        print(f"| `{r['commit']}` | {r['batch']} x {r['seq_len']} | {trains} | {ckpt} | "
              f"{r['process_peak_rss_bytes'] / 1e9:.2f} GB | {r['seconds_per_step']:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
