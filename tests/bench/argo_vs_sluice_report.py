#!/usr/bin/env python3
"""Summarises tests/bench/argo_vs_sluice.sh: wall times, and the deltas of
apiserver_request_total by verb and resource, per side (a Markdown table).

Usage: argo_vs_sluice_report.py OUT_DIR STEPS
"""
import collections
import os
import re
import sys

LINE = re.compile(r'^apiserver_request_total\{(.*)\} ([0-9.e+]+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITES = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


def counts(path):
    out = collections.Counter()
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(1)))
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        out[(labels.get("verb", ""), resource)] += float(m.group(2))
    return out


def delta(out_dir, side, i):
    before = counts(os.path.join(out_dir, f"{side}-{i}.before"))
    after = counts(os.path.join(out_dir, f"{side}-{i}.after"))
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}


def main():
    out_dir, steps = sys.argv[1], int(sys.argv[2])
    walls = collections.defaultdict(dict)
    for line in open(os.path.join(out_dir, "wall.txt")):
        side, i, wall = line.split()
        walls[side][int(i)] = float(wall)
    print(f"{steps}-step fan-out; wall seconds and apiserver_request_total deltas (all clients)\n")
    print("| side | run | wall (s) | requests | writes | requests/step | writes/step |")
    print("|---|---|---|---|---|---|---|")
    per_side = {}
    for side in ("sluice", "argo"):
        per_side[side] = collections.Counter()
        for i in sorted(walls[side]):
            d = delta(out_dir, side, i)
            total = sum(d.values())
            writes = sum(v for (verb, _), v in d.items() if verb in WRITES)
            per_side[side].update(d)
            print(f"| {side} | {i} | {walls[side][i]:.1f} | {total:.0f} | {writes:.0f} | "
                  f"{total / steps:.1f} | {writes / steps:.1f} |")
    print("\nBy verb and resource, mean per run (rows with >= 0.01 per step on either side):\n")
    print("| verb | resource | sluice | argo |")
    print("|---|---|---|---|")
    keys = set(per_side["sluice"]) | set(per_side["argo"])
    n = {side: max(1, len(walls[side])) for side in per_side}
    rows = []
    for k in keys:
        s, a = per_side["sluice"][k] / n["sluice"], per_side["argo"][k] / n["argo"]
        if max(s, a) >= 0.01 * steps:
            rows.append((k, s, a))
    for (verb, resource), s, a in sorted(rows, key=lambda r: -(r[1] + r[2])):
        print(f"| {verb} | {resource} | {s:.0f} | {a:.0f} |")


if __name__ == "__main__":
    main()
