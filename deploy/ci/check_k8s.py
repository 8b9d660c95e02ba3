#!/usr/bin/env python3
"""Checks on rendered arlas manifests that the Kubernetes schemas cannot express.

Usage: check_k8s.py RENDERED_YAML [--gpu] [--external-secret NAME]...

- every Service selects a pod template and its target ports are ports of those containers;
  a StatefulSet's serviceName is a headless Service; an HPA targets an existing workload;
- every container has cpu/memory requests and limits, liveness and readiness probes on its own
  ports, runs as non-root, and its prometheus.io/port annotation is its --metrics-listen port;
- every Secret a pod mounts is rendered too, or named with --external-secret (created by hand),
  and a Secret named with --external-secret is never rendered (no token committed to git);
- the arlas topology: a coordinator StatefulSet with a volume claim, one learner StatefulSet per
  player (agent, attacker), actors as a Deployment, `--coordinator` naming the coordinator
  Service's gRPC port; with --gpu every learner asks for an nvidia.com/gpu and has a node selector.
Needs PyYAML. Exit status 0 when all hold, 1 with one `error:` line per problem.
"""

import re
import sys

import yaml


def flags(args):
    out = {}
    for a in args:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            out[k] = v
    return out


def probe_port(probe):
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return probe[kind].get("port")
    return None


def main(argv):
    if len(argv) < 2:
        print("usage: check_k8s.py RENDERED_YAML [--gpu] [--external-secret NAME]...", file=sys.stderr)
        return 2
    path, gpu = argv[1], "--gpu" in argv
    external = {argv[i + 1] for i, a in enumerate(argv) if a == "--external-secret" and i + 1 < len(argv)}
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    problems = []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    workloads = {**{("Deployment", n): d for n, d in by_kind.get("Deployment", {}).items()},
                 **{("StatefulSet", n): d for n, d in by_kind.get("StatefulSet", {}).items()}}
    secrets = set(by_kind.get("Secret", {})) | external
    # A secretGenerator appends a content hash to the name: arlas-token-5f2b...
    committed = [n for n in by_kind.get("Secret", {}) for e in external if n == e or n.startswith(e + "-")]
    for name in sorted(committed):
        problems.append(f"Secret/{name} is rendered from the repository; create it by hand (a committed token is no secret)")
    services = by_kind.get("Service", {})

    for (kind, name), w in workloads.items():
        where = f"{kind}/{name}"
        tmpl = w["spec"]["template"]
        pod = tmpl["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        for v in pod.get("volumes", []):
            s = v.get("secret", {}).get("secretName")
            if s and s not in secrets:
                problems.append(f"{where}: mounts Secret {s!r}, which is neither rendered nor declared "
                                "external; add it to the overlay or pass --external-secret")
        annotations = tmpl["metadata"].get("annotations", {})
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            numbers = set(ports.values())
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        problems.append(f"{cw}: no {part}.{r}")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{cw}: no {probe}")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in c:
                    p = probe_port(c[probe])
                    if p not in ports and p not in numbers:
                        problems.append(f"{cw}: {probe} uses port {p!r}, which the container does not expose")
            args = flags(c.get("args", []))
            metrics = args.get("metrics-listen")
            if annotations.get("prometheus.io/scrape") != "true":
                problems.append(f"{where}: pod is not annotated prometheus.io/scrape: \"true\"")
            elif metrics is None and c.get("args", [""])[0] in ("coordinator", "learner", "actor"):
                problems.append(f"{cw}: an arlas role without --metrics-listen")
            elif metrics is not None and annotations.get("prometheus.io/port") != metrics.rsplit(":", 1)[-1]:
                problems.append(f"{where}: prometheus.io/port {annotations.get('prometheus.io/port')!r} "
                                f"is not the --metrics-listen port of {metrics!r}")
            if "coordinator" in args:
                m = re.fullmatch(r"http://([^:/]+):(\d+)", args["coordinator"])
                svc = services.get(m.group(1)) if m else None
                if not svc or int(m.group(2)) not in [p["port"] for p in svc["spec"].get("ports", [])]:
                    problems.append(f"{cw}: --coordinator={args['coordinator']} is not a port of a rendered Service")

    for name, svc in services.items():
        sel = svc["spec"].get("selector", {})
        matched = [w for w in workloads.values()
                   if sel and all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        if not matched:
            problems.append(f"Service/{name}: selector {sel} matches no pod template")
            continue
        for p in svc["spec"].get("ports", []):
            t = p.get("targetPort", p["port"])
            for w in matched:
                cports = [q for c in w["spec"]["template"]["spec"]["containers"] for q in c.get("ports", [])]
                if t not in [q.get("name") for q in cports] + [q["containerPort"] for q in cports]:
                    problems.append(f"Service/{name}: targetPort {t!r} is not a port of {w['metadata']['name']}")
    for name, s in by_kind.get("StatefulSet", {}).items():
        gov = services.get(s["spec"].get("serviceName"))
        if not gov or gov["spec"].get("clusterIP") != "None":
            problems.append(f"StatefulSet/{name}: serviceName {s['spec'].get('serviceName')!r} is not a headless Service")
    for name, h in by_kind.get("HorizontalPodAutoscaler", {}).items():
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in workloads:
            problems.append(f"HorizontalPodAutoscaler/{name}: targets {ref['kind']}/{ref['name']}, which is not rendered")

    role_of = {}
    for key, w in workloads.items():
        for c in w["spec"]["template"]["spec"]["containers"]:
            if c.get("args"):
                role_of.setdefault(c["args"][0], []).append((key, w, flags(c["args"])))
    coords = role_of.get("coordinator", [])
    if len(coords) != 1 or coords[0][0][0] != "StatefulSet" or not coords[0][1]["spec"].get("volumeClaimTemplates"):
        problems.append("expected one coordinator StatefulSet with a volumeClaimTemplate")
    learners = role_of.get("learner", [])
    players = sorted(f.get("player", "?") for _, _, f in learners)
    if players != ["agent", "attacker"] or any(k[0] != "StatefulSet" for k, _, _ in learners):
        problems.append(f"expected one learner StatefulSet per player (agent, attacker), found {players}")
    if [k[0] for k, _, _ in role_of.get("actor", [])] != ["Deployment"]:
        problems.append("expected actors as exactly one Deployment (so that kubectl scale works)")
    if gpu:
        for key, w, _ in learners:
            pod = w["spec"]["template"]["spec"]
            limits = pod["containers"][0].get("resources", {}).get("limits", {})
            if "nvidia.com/gpu" not in limits:
                problems.append(f"{key[0]}/{key[1]}: --gpu overlay but no nvidia.com/gpu limit")
            if not pod.get("nodeSelector"):
                problems.append(f"{key[0]}/{key[1]}: --gpu overlay but no nodeSelector for GPU nodes")

    for p in problems:
        print(f"error: {path}: {p}")
    if problems:
        return 1
    print(f"ok: {path}: {len(docs)} objects; services, probes, resources, secrets, scrape "
          f"annotations and the arlas topology agree{' (GPU learners)' if gpu else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
