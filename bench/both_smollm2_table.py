#!/usr/bin/env python3
"""Prints the markdown of bench/both_smollm2.sh's records: whole `arlas train` runs with both
players SmolLM2.

    python3 bench/both_smollm2_table.py bench/results/both-smollm2-STAMP.jsonl

Per run: the commit (the run's versions.json), the settings that ran (its config.json), wall
seconds and peak RSS of the whole process (/usr/bin/time: warm-up, iterations, evaluations,
report), then each iteration's seconds by phase and each update's optimizer steps, trained
tokens and KL to the start.
"""

from __future__ import annotations

import sys

from records import records

GB = 1e9
GIB = 2**30


def settings(c: dict) -> str:
    w = c.get("warmup", {})
    return (f"model {c.get('model')}, suites {','.join(c.get('rollout', {}).get('game', {}).get('suites', [])) or 'all'}, "
            f"warm-up {w.get('episodes')} episodes, {c.get('iterations')} iteration(s) of "
            f"{c.get('tasks_per_iteration')} tasks × {c.get('group_size')} rollouts, "
            f"{c.get('eval', {}).get('episodes')} evaluation episodes per attacker, "
            f"format-error penalty {c.get('rollout', {}).get('game', {}).get('format_error_penalty')}, "
            f"seed {c.get('seed')}")


def main(paths: list[str]) -> None:
    for r in records(paths):
        print(f"- commit `{r['versions'].get('commit', 'unrecorded')}`: {settings(r['config'])}; "
              f"whole process **{r['process_seconds']:.0f} s**, peak RSS "
              f"**{r['process_peak_rss_bytes'] / GB:.2f} GB** ({r['process_peak_rss_bytes'] / GIB:.2f} GiB); "
              f"{r['warmup_steps']} warm-up steps.")
        print()
        print("| iteration | seconds | rollout s | attacker update s | agent update s | episodes | sampled tokens |")
        print("|---|---|---|---|---|---|---|")
        for it in r["iterations"]:
            ph = it.get("phase_seconds") or {}
            print(f"| {it['iteration']} | {it['seconds']:.1f} | {ph.get('rollout', 0):.1f} | "
                  f"{ph.get('attacker_update', 0):.1f} | {ph.get('agent_update', 0):.1f} | "
                  f"{it['episodes']} | {it['sampled_tokens']} |")
        print()
        print("| iteration | player | version | groups (flat) | optimizer steps | trained tokens | KL to start |")
        print("|---|---|---|---|---|---|---|")
        for u in r["updates"]:
            m, g = u["means"], u.get("groups") or {}
            print(f"| {u['iteration']} | {u['player']} | {u['version']} | "
                  f"{g.get('groups', '?')} ({g.get('flat_groups', '?')}) | {u['steps']} | "
                  f"{m['tokens']} | {m['kl']:.2e} |")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1:])
