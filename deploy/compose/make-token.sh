#!/usr/bin/env bash
# Writes the shared cluster token and the Grafana admin password for the compose deployment
# into deploy/compose/secrets/ (git-ignored). Keeps existing files; delete them to rotate.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
for name in arlas-token grafana-admin-password; do
  if [ ! -s "$dir/$name" ]; then
    (umask 022; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/$name")
    echo "wrote $dir/$name"
  else
    echo "kept $dir/$name"
  fi
done
# Compose bind-mounts file secrets with their host permissions; the containers run as uid 10001,
# so the files must be readable by others on this host (0644). Use Swarm or k8s for stricter modes.
chmod 0644 "$dir/arlas-token" "$dir/grafana-admin-password"
