"""Reads a results directory with AgentDojo's own loader (`agentdojo.benchmark.load_task_results`)
and prints one JSON list: per file, its pipeline, suite, user task, attack, injection task,
and the utility, security and message count AgentDojo read back.

    .venv/bin/python read_results.py DIR
"""

import json
import os
import sys
from pathlib import Path

from agentdojo.benchmark import load_task_results


def main(root: str) -> None:
    out = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            parts = os.path.relpath(os.path.join(folder, name), root).split(os.sep)
            if len(parts) != 5 or not name.endswith(".json"):
                continue
            pipeline, suite, user, attack, injection = parts[:4] + [name[: -len(".json")]]
            r = load_task_results(pipeline, suite, user, attack, injection, logdir=Path(root))
            out.append({
                "pipeline": pipeline, "suite": suite, "user_task": user, "attack": attack,
                "injection_task": injection, "utility": r.utility, "security": r.security,
                "messages": len(r.messages),
            })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
