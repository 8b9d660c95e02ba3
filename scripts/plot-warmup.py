#!/usr/bin/env python3
"""Plots the agent's imitation (warm-up) token loss of one or more runs as one SVG.

usage: scripts/plot-warmup.py OUT.svg LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Reads RUN_DIR/metrics.jsonl (lines with "kind": "warmup" and "player": "agent"); the x axis
is the fraction of the run's warm-up steps done, so runs of different lengths share it.
Standard library only.
"""
import json
import sys

W, H, L, R, T, B = 640, 300, 50, 170, 20, 40
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def losses(run):
    out = []
    with open(f"{run}/metrics.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if d.get("kind") == "warmup" and d.get("player") == "agent":
                out.append(d["stats"]["loss"])
    if not out:
        sys.exit(f"no agent warm-up steps in {run}/metrics.jsonl")
    return out


def smooth(xs, k=5):
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, series = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    data = [(label, smooth(losses(run))) for label, run in series]
    top = max(max(ys) for _, ys in data)
    px = lambda f: L + f * (W - L - R)
    py = lambda y: T + (1 - y / top) * (H - T - B)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
             f'<text x="{(L+W-R)/2}" y="{H-8}" text-anchor="middle">fraction of warm-up steps</text>',
             f'<text x="12" y="{(T+H-B)/2}" transform="rotate(-90 12 {(T+H-B)/2})" text-anchor="middle">agent token loss (mean of 5 steps)</text>']
    for i in range(5):
        y = top * i / 4
        parts.append(f'<text x="{L-6}" y="{py(y)+4:.1f}" text-anchor="end">{y:.1f}</text>')
        parts.append(f'<line x1="{L}" y1="{py(y):.1f}" x2="{W-R}" y2="{py(y):.1f}" stroke="#ddd"/>')
    for i in range(5):
        parts.append(f'<text x="{px(i/4):.1f}" y="{H-B+16}" text-anchor="middle">{i/4:.2f}</text>')
    for k, (label, ys) in enumerate(data):
        c = COLORS[k % len(COLORS)]
        n = max(len(ys) - 1, 1)
        pts = " ".join(f"{px(i/n):.1f},{py(y):.1f}" for i, y in enumerate(ys))
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<line x1="{W-R+10}" x2="{W-R+26}" y1="{T+10+18*k}" y2="{T+10+18*k}" stroke="{c}" stroke-width="2"/>')
        parts.append(f'<text x="{W-R+30}" y="{T+14+18*k}">{label} ({len(ys)} steps)</text>')
    parts.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
