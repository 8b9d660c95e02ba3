#!/usr/bin/env bash
# The scripted players' figures docs/game.md quotes, regenerated: each setting plays 10,000
# episodes with `arlas game play --json` (seed 0) and one Markdown table row is printed, every
# rate with its 95% Wilson interval, followed by the commit of the binary.
#
#   scripts/game-figures.sh [ARLAS]      (default ./target/release/arlas)
set -euo pipefail
arlas="${1:-./target/release/arlas}"
episodes="${EPISODES:-10000}"
settings=(
    "expert templates train" "expert templates eval"
    "naive:1.0 templates train" "naive:1.0 templates eval"
    "naive:0.5 templates train" "naive:1.0 none eval"
    "random templates train" "random templates eval"
)
echo "| agent | attacker | split | episodes | task success [95% CI] | attack success [95% CI] | format errors | mean turns |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for s in "${settings[@]}"; do
    read -r agent attacker split <<<"$s"
    "$arlas" game play --agent "$agent" --attacker "$attacker" --split "$split" \
        --episodes "$episodes" --seed 0 --json |
        python3 -c '
import json, math, sys
r = json.load(sys.stdin)
n = r["episodes"]
def wilson(rate):
    z = 1.959963984540054
    k = round(rate * n)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f"{p:.4f} [{max(0.0, c - h):.4f}, {min(1.0, c + h):.4f}]"
cells = [r["agent"], r["attacker"], r["split"], str(n), wilson(r["task_success_rate"]),
         wilson(r["attack_success_rate"]), "%.4f" % r["format_error_rate"], "%.3f" % r["mean_turns"]]
print("| " + " | ".join(cells) + " |")'
done
echo
echo "Binary: $("$arlas" --version)"
