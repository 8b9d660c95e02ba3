#!/usr/bin/env bash
# Makes the AgentDojo environment service's venv (envs/agentdojo/.venv) from the pinned
# requirements and generates its gRPC stubs (envs/agentdojo/gen) from proto/arlas/v1.
# Idempotent: a venv whose requirements stamp matches is kept. Needs python3 >= 3.10 with
# venv, and the package registry (PyPI) on a first run.
#
# Usage: envs/agentdojo/setup.sh   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "agentdojo setup: creating $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi
mkdir -p "$here/gen"
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto" --python_out="$here/gen" \
    --grpc_python_out="$here/gen" "$root/proto/arlas/v1/environment.proto"
echo "agentdojo setup: ready ($venv/bin/python $here/server.py --help)" >&2
