#!/usr/bin/env python3
"""Prints the markdown table of a bench/run.sh results file: arlas vs torch tokens/s.

    python3 bench/table.py bench/results/2026-11-25T0200Z.jsonl [more.jsonl ...]

Records are paired by (model, bench, shape). Given several runs (files, or reruns appended to
one file), each side shows its best tokens/s, and the range over the runs in brackets: on a
shared machine the best run is the one least disturbed by other jobs. Records of
framework "arlas-candle1" (arlas with CANDLE_NUM_THREADS=1) get two extra columns. "other cores busy" is what bench/quiet.py measured during each run
(0 = quiet machine); arlas's sampling tokens/s counts the tokens it generated, which is fewer
than batch x new tokens x repeats when rows sampled an end-of-sequence id (shown in brackets). Goals (the issue's contract): sampling >= 2x torch at batch 32,
training >= 1x torch.
"""

from __future__ import annotations

import json
import sys


def key(r: dict) -> tuple:
    if r["bench"] == "sample":
        return (r["name"], "sample", r["batch"], f'{r["prompt_len"]}+{r["new_tokens"]}')
    return (r["name"], "train", r["batch"], f'{r["seq_len"]} (micro {r["micro_batch"]})')


def goal(bench: str, batch: int, ratio: float) -> str:
    if bench == "sample" and batch == 32:
        return ("met" if ratio >= 2.0 else "**not met**") + " (>= 2x)"
    if bench == "train":
        return ("met" if ratio >= 1.0 else "**not met**") + " (>= 1x)"
    return "-"


def best(runs: list[dict]) -> dict | None:
    return max(runs, key=lambda r: r["tokens_per_sec"]) if runs else None


def spread(runs: list[dict]) -> str:
    if len(runs) < 2:
        return ""
    values = sorted(r["tokens_per_sec"] for r in runs)
    return f" [{values[0]:.0f}-{values[-1]:.0f}]" if values[-1] >= 100 else f" [{values[0]:.1f}-{values[-1]:.1f}]"


def others(r: dict | None) -> str:
    """Cores other processes kept busy during the run (bench/quiet.py), else the load average."""
    if r is None:
        return "-"
    if "run" in r:
        return f'{r["run"]["others_cores"]:.2f}'
    return f'load {r["load_before"]:.1f}'


def early_stops(a: dict | None) -> str:
    """arlas counts the tokens it generated; rows that sampled an end-of-sequence id stop early."""
    if a is None or a["bench"] != "sample":
        return ""
    nominal = a["batch"] * a["new_tokens"] * a["repeats"]
    return "" if a["generated_tokens"] == nominal else f' ({a["generated_tokens"]}/{nominal} tok)'


def main(paths: list[str]) -> None:
    pairs: dict[tuple, dict[str, dict]] = {}
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r.get("bench") not in ("sample", "train") or "framework" not in r:
                    continue
                pairs.setdefault(key(r), {}).setdefault(r["framework"], []).append(r)
    variant = any("arlas-candle1" in sides for sides in pairs.values())
    extra_head = " arlas, CANDLE_NUM_THREADS=1 | its ratio |" if variant else ""
    extra_rule = "---:|---:|" if variant else ""
    print(f"| model | bench | batch | shape | arlas tok/s | torch tok/s | arlas/torch | arlas MFU | torch MFU | other cores busy (arlas/torch) | goal |{extra_head}")
    print(f"|---|---|---:|---|---:|---:|---:|---:|---:|---|---|{extra_rule}")
    for k, sides in pairs.items():
        runs_a, runs_t = sides.get("arlas", []), sides.get("torch", [])
        a, t = best(runs_a), best(runs_t)
        name, bench, batch, shape = k
        a_tps = f'{a["tokens_per_sec"]:.1f}{spread(runs_a)}{early_stops(a)}' if a else "-"
        t_tps = f'{t["tokens_per_sec"]:.1f}{spread(runs_t)}' if t else "-"
        a_mfu = f'{100 * a["mfu"]:.2f}%' if a else "-"
        t_mfu = f'{100 * t["mfu"]:.2f}%' if t else "-"
        load = "/".join(others(s) for s in (a, t))
        if a and t:
            ratio = a["tokens_per_sec"] / t["tokens_per_sec"]
            r_txt, g_txt = f"{ratio:.2f}x", goal(bench, batch, ratio)
        else:
            r_txt, g_txt = "-", "-"
        extra = ""
        if variant:
            runs_c = sides.get("arlas-candle1", [])
            c = best(runs_c)
            c_tps = f'{c["tokens_per_sec"]:.1f}{spread(runs_c)}' if c else "-"
            c_ratio = f'{c["tokens_per_sec"] / t["tokens_per_sec"]:.2f}x' if c and t else "-"
            extra = f" {c_tps} | {c_ratio} |"
        print(f"| {name} | {bench} | {batch} | {shape} | {a_tps} | {t_tps} | {r_txt} | {a_mfu} | {t_mfu} | {load} | {g_txt} |{extra}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
