#!/usr/bin/env python3
"""Renders bench/env.sh records (JSON lines) as the Markdown table of docs/benchmarks.md."""
import json
import sys

print("| commit | CPU | clients | episodes | steps | seconds | steps/s | episodes/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        r = json.loads(line)
        cpu = r["env"]["cpu"]["model"]
        for row in r["rows"]:
            print(f"| `{r['commit'][:10]}` | {cpu} | {row['clients']} | {row['episodes']} | {row['steps']} "
                  f"| {row['seconds']:.2f} | {row['steps_per_sec']:.0f} | {row['episodes_per_sec']:.1f} |")
