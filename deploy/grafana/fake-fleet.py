#!/usr/bin/env python3
"""Serves contract-shaped arlas metrics on loopback, to try Prometheus, the alert rules and the
dashboard's queries without a cluster (docs/operations.md, walk-through).

    python3 deploy/grafana/fake-fleet.py --port 19101 --role learner --player agent

Every metric of docs/metrics.md that the role exports, with values that move over time
(counters grow, losses drift). `--nan-loss` makes the learner report a NaN loss, to see
ArlasLossNotFinite fire. Not a test double for the real roles: names and labels only.
"""

import argparse
import math
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.time()
BUCKETS_STALENESS = [0, 1, 2, 4, 8, 16]
BUCKETS_BROADCAST = [0.1, 0.5, 1, 2, 5, 10, 30]


def histogram(name, labels, buckets, rate, mean, t):
    """Cumulative buckets for `rate` observations/s around `mean` (exponential)."""
    n = rate * t
    lines, lab = [], (labels + ",") if labels else ""
    for b in buckets:
        lines.append(f'{name}_bucket{{{lab}le="{b}"}} {n * (1 - math.exp(-(b + 0.5) / mean)):.3f}')
    lines.append(f'{name}_bucket{{{lab}le="+Inf"}} {n:.3f}')
    lines.append(f"{name}_sum{{{labels}}} {n * mean:.3f}")
    lines.append(f"{name}_count{{{labels}}} {n:.3f}")
    return lines


def render(args):
    t = time.time() - START
    p = f'player="{args.player}"'
    out = [f'arlas_build_info{{version="0.1.0",role="{args.role}"}} 1']
    if args.role == "coordinator":
        out += [f"arlas_connected_actors {args.actors}", "arlas_connected_learners 2",
                f"arlas_population_size {1 + int(t // 60)}",
                f'arlas_policy_version{{player="agent"}} {int(t // 30)}',
                f'arlas_policy_version{{player="attacker"}} {int(t // 30)}',
                f'arlas_checkpoint_bytes_total{{direction="sent"}} {int(t * 2e6)}']
    elif args.role == "learner":
        loss = "NaN" if args.nan_loss else f"{0.5 + 0.3 * math.sin(t / 60):.4f}"
        out += [f"arlas_loss{{{p}}} {loss}", f"arlas_kl{{{p}}} {0.01 + t * 1e-5:.5f}",
                f"arlas_entropy{{{p}}} {2.0 - t * 1e-4:.4f}", f"arlas_grad_norm{{{p}}} 1.3",
                f"arlas_clip_fraction{{{p}}} 0.04", f"arlas_logprob_mismatch{{{p}}} 0.0002",
                f"arlas_updates_total{{{p}}} {int(t // 10)}", f"arlas_updates_skipped_total{{{p}}} 0",
                f"arlas_learner_last_update_timestamp_seconds{{{p}}} {START + 10 * (t // 10):.0f}",
                f"arlas_policy_version{{{p}}} {int(t // 30)}",
                f"arlas_learner_queue_depth {int(8 + 4 * math.sin(t / 20))}",
                f"arlas_trajectories_received_total {int(t * 2)}",
                f"arlas_trajectories_acknowledged_total {int(t * 2)}",
                f'arlas_trajectories_dropped_total{{reason="stale"}} {int(t * 0.05)}',
                f'arlas_checkpoint_bytes_total{{direction="sent"}} {int(t * 1e6)}']
        out += histogram("arlas_trajectory_staleness_versions", p, BUCKETS_STALENESS, 2, 1.0, t)
    else:
        out += [f'arlas_episodes_total{{role="actor"}} {int(t * 0.5)}',
                f'arlas_tokens_sampled_total{{player="agent"}} {int(t * 40)}',
                f'arlas_tokens_sampled_total{{player="attacker"}} {int(t * 25)}',
                f'arlas_episode_reward{{player="agent"}} {-0.2 + t * 1e-3:.3f}',
                f'arlas_episode_reward{{player="attacker"}} {0.2 - t * 1e-3:.3f}',
                f"arlas_task_success_rate {min(0.9, 0.3 + t * 5e-4):.3f}",
                f"arlas_attack_success_rate {max(0.05, 0.4 - t * 5e-4):.3f}",
                'arlas_policy_version{player="agent"} 3', 'arlas_policy_version{player="attacker"} 3',
                f'arlas_checkpoint_bytes_total{{direction="received"}} {int(t * 1e6)}']
        out += histogram("arlas_checkpoint_broadcast_seconds", "", BUCKETS_BROADCAST, 0.05, 1.5, t)
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True, help="loopback port to serve /metrics on")
    ap.add_argument("--role", choices=["coordinator", "learner", "actor"], required=True)
    ap.add_argument("--player", choices=["agent", "attacker"], default="agent", help="learner's player")
    ap.add_argument("--actors", type=int, default=2, help="coordinator: arlas_connected_actors")
    ap.add_argument("--nan-loss", action="store_true", help="learner: report a NaN loss")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (render(args) if self.path == "/metrics" else "ok\n").encode()
            self.send_response(200 if self.path in ("/metrics", "/healthz") else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
