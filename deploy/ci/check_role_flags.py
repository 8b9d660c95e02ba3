#!/usr/bin/env python3
"""Checks that the deployments pass the arlas roles only flags and variables they have.

Usage: check_role_flags.py REFERENCE_MD (--compose MERGED_YAML | --k8s RENDERED_YAML)...

REFERENCE_MD is docs/config-reference.md, generated from the clap definitions (a cargo test
keeps it equal to them). For every container or service that runs `arlas coordinator`,
`arlas learner` or `arlas actor`:
- every `--flag` is a flag of that subcommand (or a global one);
- every ARLAS_* variable is one of that subcommand's (or a global one, or one the image's
  health check reads);
- the settings a role cannot start without (no clap default; see src/cli/<role>.rs) are set,
  by flag or variable.
Needs PyYAML. Exit status 0 when all hold, 1 with one `error:` line per problem.
"""

import re
import sys

import yaml

ROLES = ("coordinator", "learner", "actor")
# Read by deploy/docker/healthcheck.sh, not by the binary.
IMAGE_VARIABLES = {"ARLAS_HEALTH_URL", "ARLAS_HEALTH_TIMEOUT"}
# Settings each role refuses to start without (required in resolve(), not by clap).
REQUIRED = {"coordinator": ["data"], "learner": ["player", "data"], "actor": ["coordinator", "cache"]}
SECTION = re.compile(r"^## (?:`arlas ([a-z -]+)`|Every command)$")
ROW = re.compile(r"^\| `(?:-\w, )?--([a-z0-9-]+)[^`]*` \| (?:`(ARLAS_[A-Z0-9_]+)`)? \|")


def read_reference(path):
    """{command: ({flag: variable or None})}, the global flags under ''."""
    sections, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            m = SECTION.match(line)
            if m:
                current = sections.setdefault(m.group(1) or "", {})
                continue
            m = ROW.match(line)
            if m and current is not None:
                current[m.group(1)] = m.group(2)
    return sections


def flag_names(command):
    out = []
    for arg in command:
        arg = str(arg)
        if arg.startswith("--"):
            out.append(arg[2:].split("=", 1)[0])
    return out


def env_names(env):
    if isinstance(env, dict):
        return list(env.keys())
    names = []
    for e in env or []:
        if isinstance(e, dict):
            names.append(e.get("name", ""))
        else:
            names.append(str(e).split("=", 1)[0])
    return names


def check(where, command, env, reference, problems):
    if not command or str(command[0]) not in ROLES:
        return
    role = str(command[0])
    known = dict(reference.get("", {}))
    known.update(reference.get(role, {}))
    if role not in reference:
        problems.append(f"{where}: `arlas {role}` has no section in the reference; regenerate it")
        return
    variables = {v: k for k, v in known.items() if v}
    passed = flag_names(command[1:])
    for flag in passed:
        if flag not in known:
            problems.append(f"{where}: `arlas {role}` has no flag --{flag} (see `arlas {role} --help`)")
    names = env_names(env)
    for name in names:
        if name.startswith("ARLAS_") and name not in variables and name not in IMAGE_VARIABLES:
            problems.append(
                f"{where}: `arlas {role}` reads no variable {name}; it would be ignored (see `arlas {role} --help`)"
            )
    for setting in REQUIRED[role]:
        if setting not in passed and known.get(setting) not in names:
            problems.append(f"{where}: `arlas {role}` needs --{setting}; pass it (or {known.get(setting)})")


def main(argv):
    if len(argv) < 4 or len(argv[2:]) % 2:
        print("usage: check_role_flags.py REFERENCE_MD (--compose FILE | --k8s FILE)...", file=sys.stderr)
        return 2
    reference = read_reference(argv[1])
    problems, seen = [], 0
    for kind, path in zip(argv[2::2], argv[3::2]):
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if kind == "--compose":
            for doc in docs:
                for name, svc in (doc.get("services") or {}).items():
                    seen += 1
                    check(f"{path}: service {name}", svc.get("command") or [], svc.get("environment"), reference, problems)
        elif kind == "--k8s":
            for doc in docs:
                spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    seen += 1
                    where = f"{path}: {doc.get('kind')}/{doc['metadata']['name']} container {c.get('name')}"
                    check(where, c.get("args") or c.get("command") or [], c.get("env"), reference, problems)
        else:
            print(f"unknown option {kind}; use --compose or --k8s", file=sys.stderr)
            return 2
    if seen == 0:
        problems.append("no service or container found: is the file a merged compose file or rendered manifests?")
    for p in problems:
        print(f"error: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
