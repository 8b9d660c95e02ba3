#!/usr/bin/env python3
"""What `docker compose config` would check, for machines without the compose plugin.

Usage: check_compose.py OUT_YAML COMPOSE_FILE [OVERRIDE_FILE...]

Loads the files the way compose does (YAML anchors and `<<` merges, `${VAR:-default}`
interpolation from the environment, later files merged over earlier ones), writes the merged
model to OUT_YAML (the caller validates it against the Compose Specification schema), and checks
what a schema cannot see:
- every secret, volume and network a service uses is declared; depends_on names services;
- bind-mounted files and build contexts/Dockerfiles exist (relative to the first file);
- each arlas role runs a known subcommand with the token file from the `arlas-token` secret, and
  `--coordinator` points at the coordinator service's gRPC port;
- there is exactly one learner per player (agent, attacker);
- prometheus.yml scrapes exactly the arlas services, on their --metrics-listen port.
Needs PyYAML. Exit status 0 when all hold, 1 with one `error:` line per problem.
"""

import os
import re
import sys

import yaml

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
ROLES = {"coordinator", "learner", "actor"}


def interpolate(value, problems):
    if isinstance(value, dict):
        return {k: interpolate(v, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, problems) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3) or ""
        current = os.environ.get(name)
        if op in (":-", ":?") and not current:
            current = None
        if current is None:
            if op and op.endswith("?"):
                problems.append(f"variable {name} must be set: {default}")
                return ""
            return default if op else ""
        return current

    return VAR.sub(sub, value)


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return over


def flags(command):
    """`--name=value` / `--name value` pairs of a command list."""
    out, i = {}, 0
    while i < len(command):
        arg = str(command[i])
        if arg.startswith("--"):
            if "=" in arg:
                k, v = arg[2:].split("=", 1)
            elif i + 1 < len(command) and not str(command[i + 1]).startswith("--"):
                k, v = arg[2:], str(command[i + 1])
                i += 1
            else:
                k, v = arg[2:], ""
            out[k] = v
        i += 1
    return out


def port_of(addr):
    return addr.rsplit(":", 1)[-1].rstrip("/")


def main(argv):
    if len(argv) < 3:
        print("usage: check_compose.py OUT_YAML COMPOSE_FILE [OVERRIDE_FILE...]", file=sys.stderr)
        return 2
    out_path, files = argv[1], argv[2:]
    base_dir = os.path.dirname(os.path.abspath(files[0]))
    problems, model = [], {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
        doc = {k: v for k, v in doc.items() if not k.startswith("x-")}
        model = merge(model, interpolate(doc, problems))
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(model, f, sort_keys=False)

    services = model.get("services") or {}
    declared = {kind: set((model.get(kind) or {}).keys()) for kind in ("secrets", "volumes", "networks")}
    for name, svc in services.items():
        where = f"service {name}"
        for s in svc.get("secrets", []):
            s = s["source"] if isinstance(s, dict) else s
            if s not in declared["secrets"]:
                problems.append(f"{where} uses secret {s!r}, not declared under top-level secrets")
        for n in svc.get("networks", []):
            if n not in declared["networks"]:
                problems.append(f"{where} uses network {n!r}, not declared under top-level networks")
        deps = svc.get("depends_on", {})
        for d in deps if isinstance(deps, (list, dict)) else []:
            if d not in services:
                problems.append(f"{where} depends on {d!r}, which is not a service")
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith((".", "/")):
                if not os.path.exists(os.path.join(base_dir, src)):
                    problems.append(f"{where} bind-mounts {src}, which does not exist next to {files[0]}")
            elif src and src not in declared["volumes"]:
                problems.append(f"{where} uses volume {src!r}, not declared under top-level volumes")
        build = svc.get("build")
        if isinstance(build, dict):
            ctx = os.path.join(base_dir, build.get("context", "."))
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(dockerfile):
                problems.append(f"{where} builds with {dockerfile}, which does not exist")

    roles, players, metrics_ports = {}, [], {}
    for name, svc in services.items():
        command = svc.get("command")
        if not (isinstance(command, list) and command and command[0] in ROLES):
            continue
        role, f = command[0], flags(command[1:])
        roles[name] = role
        if "arlas-token" not in [s["source"] if isinstance(s, dict) else s for s in svc.get("secrets", [])]:
            problems.append(f"service {name} ({role}) does not mount the arlas-token secret")
        if f.get("token-file") != "/run/secrets/arlas-token":
            problems.append(f"service {name} ({role}) must pass --token-file=/run/secrets/arlas-token")
        if "metrics-listen" not in f:
            problems.append(f"service {name} ({role}) has no --metrics-listen; Prometheus cannot scrape it")
        else:
            metrics_ports[name] = port_of(f["metrics-listen"])
        if role == "learner":
            players.append(f.get("player"))
        if role in ("learner", "actor"):
            target = f.get("coordinator", "")
            m = re.fullmatch(r"http://([^:/]+):(\d+)", target)
            coord = services.get(m.group(1)) if m else None
            if not coord or not coord.get("command") or coord["command"][0] != "coordinator":
                problems.append(f"service {name}: --coordinator={target!r} does not name the coordinator service")
            elif port_of(flags(coord["command"][1:]).get("listen", "")) != m.group(2):
                problems.append(f"service {name}: --coordinator={target!r} is not the coordinator's --listen port")
    if sorted(p for p in players if p) != ["agent", "attacker"] or len(players) != 2:
        problems.append(f"expected one learner per player (agent, attacker), found players {players}")
    if "coordinator" not in roles.values() or "actor" not in roles.values():
        problems.append("a deployment needs a coordinator service and an actor service")

    prom = services.get("prometheus")
    if prom:
        cfg_src = next((v.split(":")[0] for v in prom.get("volumes", []) if isinstance(v, str) and "prometheus.yml" in v), None)
        if cfg_src:
            with open(os.path.join(base_dir, cfg_src), encoding="utf-8") as f:
                cfg = yaml.safe_load(f)
            scraped = {}
            for job in cfg.get("scrape_configs", []):
                for sd in job.get("dns_sd_configs", []):
                    for n in sd.get("names", []):
                        scraped[n] = str(sd.get("port"))
            for name in roles:
                if name not in scraped:
                    problems.append(f"{cfg_src} does not scrape service {name}; add it to dns_sd_configs names")
                elif scraped[name] != metrics_ports.get(name):
                    problems.append(f"{cfg_src} scrapes {name} on port {scraped[name]}, but it serves metrics on {metrics_ports.get(name)}")
            for name in scraped:
                if name not in roles:
                    problems.append(f"{cfg_src} scrapes {name!r}, which is not an arlas service")

    for p in problems:
        print(f"error: {' + '.join(files)}: {p}")
    if problems:
        return 1
    print(f"ok: {' + '.join(files)}: {len(services)} services ({len(roles)} arlas roles), "
          "references, role flags and scrape targets agree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
