#!/usr/bin/env bash
# Environment steps per second through the AgentDojo service (`arlas bench env`), 1 and 4
# concurrent clients, with the commit it ran at; appends one JSON record to OUT.
# bench/env_table.py renders the records for docs/benchmarks.md.
#
# Usage: bench/env.sh OUT.jsonl [ARLAS]   (ARLAS defaults to ./target/release/arlas)
set -euo pipefail
if [[ $# -lt 1 ]]; then
    sed -n '2,7p' "$0" >&2
    exit 2
fi
out="$1" arlas="${2:-./target/release/arlas}"
commit="$(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo -dirty)"
"$arlas" bench env --env agentdojo --clients 1,4 --episodes 64 --batch 16 --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); r["commit"]=sys.argv[1]; print(json.dumps(r))' "$commit" >>"$out"
echo "env.sh: wrote $out" >&2
