#!/usr/bin/env python3
"""Benchmark hygiene on a shared machine: wait until it is idle, and measure how much CPU
other processes took while a benchmark ran.

    quiet.py wait [--idle 0.95] [--for-seconds 5] [--timeout 900]
        Blocks until the whole machine was at least --idle idle (fraction of all cores, from
        /proc/stat) for --for-seconds in a row; gives up after --timeout seconds and says so.
    quiet.py run --meta FILE -- COMMAND...
        Runs COMMAND (its stdout and stderr pass through) and writes to FILE a JSON object:
        wall_s, bench_cpu_s (CPU seconds of COMMAND and its children) and others_cores, the
        average number of cores that *other* processes kept busy meanwhile (0 = quiet machine;
        2 = another full 2-core job, which roughly halves what a 2-thread benchmark gets).

The 1-minute load average lags by a minute and counts waiting processes; these numbers do not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_times() -> tuple[float, float]:
    """(busy, total) core-seconds since boot, summed over all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return (total - idle) / TICK, total / TICK


def wait(idle: float, for_seconds: float, timeout: float) -> int:
    start = time.monotonic()
    quiet_since = None
    busy0, total0 = cpu_times()
    while True:
        time.sleep(1.0)
        busy1, total1 = cpu_times()
        fraction_idle = 1.0 - (busy1 - busy0) / max(total1 - total0, 1e-9)
        busy0, total0 = busy1, total1
        now = time.monotonic()
        if fraction_idle >= idle:
            quiet_since = quiet_since or now
            if now - quiet_since >= for_seconds:
                return 0
        else:
            quiet_since = None
        if now - start >= timeout:
            print(f"quiet.py: machine not idle after {timeout:.0f} s; running anyway", file=sys.stderr)
            return 0


def run(meta: str, command: list[str]) -> int:
    busy0, _ = cpu_times()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    code = subprocess.call(command)
    wall = time.monotonic() - start
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, _ = cpu_times()
    bench_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    others = max(0.0, (busy1 - busy0) - bench_cpu) / max(wall, 1e-9)
    with open(meta, "w") as f:
        json.dump({"wall_s": round(wall, 2), "bench_cpu_s": round(bench_cpu, 2), "others_cores": round(others, 2)}, f)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait", help="block until the machine is idle")
    w.add_argument("--idle", type=float, default=0.95, help="idle fraction of all cores (default 0.95)")
    w.add_argument("--for-seconds", type=float, default=5.0, help="for this long in a row (default 5)")
    w.add_argument("--timeout", type=float, default=900.0, help="give up after this long (default 900)")
    r = sub.add_parser("run", help="run a command and measure the CPU others took meanwhile")
    r.add_argument("--meta", required=True, help="where to write the JSON measurements")
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args()
    if args.command == "wait":
        return wait(args.idle, args.for_seconds, args.timeout)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("run needs a command after --")
    return run(args.meta, cmd)


if __name__ == "__main__":
    sys.exit(main())
