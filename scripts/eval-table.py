#!/usr/bin/env python3
"""Prints the evaluations a run directory recorded (metrics.jsonl `eval` records) as Markdown,
with the settings and commit from the run's config.json and versions.json.

Usage: scripts/eval-table.py RUN_DIR [RUN_DIR...]
"""
import json
import os
import sys


def rate(p):
    return f"{p['count']}/{p['n']} = {p['rate']:.2f} [{p['low']:.2f}, {p['high']:.2f}]"


for run in sys.argv[1:]:
    config = json.load(open(os.path.join(run, "config.json")))
    versions = json.load(open(os.path.join(run, "versions.json")))
    env = config.get("environment", {})
    warmup = config["warmup"]
    game = config["rollout"]["game"]
    print(f"- `{os.path.basename(os.path.normpath(run))}`: commit `{versions['commit']}`; "
          f"environment {env.get('kind', 'builtin')} {','.join(env.get('suites') or []) or 'all suites'}; "
          f"model {config['model']}; warm-up {warmup['episodes']} demonstrations x {warmup['epochs']} epochs "
          f"(naive fraction {warmup['naive_fraction']}, lr {warmup['train']['learning_rate']}); "
          f"{config['iterations']} iterations; max turns {game['max_turns']}; seed {config['seed']}")
    print()
    print("| evaluation | attacker | task success (count/n = rate [95% CI]) | attack success | format errors / turn |")
    print("|---|---|---|---|---|")
    for line in open(os.path.join(run, "metrics.jsonl")):
        r = json.loads(line)
        if r.get("kind") != "eval":
            continue
        rep = r.get("report", r)
        name = f"iteration {r.get('iteration', '?')}"
        na = rep["no_attack"]
        print(f"| {name} | none | {rate(na['task_success'])} | {rate(na['attack_success'])} | {na['format_error_rate']:.2f} |")
        for attacker, v in sorted(rep["by_attacker"].items()):
            print(f"| {name} | {attacker} | {rate(v['task_success'])} | {rate(v['attack_success'])} | {v['format_error_rate']:.2f} |")
    print()
