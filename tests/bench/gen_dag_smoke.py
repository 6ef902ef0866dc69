#!/usr/bin/env python3
"""Smoke test of gen_dag.py (CTest; not a benchmark, nothing is timed).

For every shape: generates a small DAG, checks that ninja accepts build.ninja
and would run exactly N commands, that yaml-cpp loads pipeline.yaml with N
steps, that both files have the same edges, and, when a sluice binary is
given, that `sluice lint` accepts the pipeline.

usage: gen_dag_smoke.py --yaml-loader BIN [--sluice BIN]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = [
    ["--shape", "independent", "--n", "7"],
    ["--shape", "chain", "--n", "7"],
    ["--shape", "diamond", "--n", "12", "--width", "4", "--fan", "all"],
    ["--shape", "diamond", "--n", "12", "--width", "4", "--fan", "two", "--work", "true"],
]
EXPECTED_EDGES = [0, 6, 32, 16]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def yaml_edges(text):
    edges = 0
    for line in text.splitlines():
        m = re.fullmatch(r"\s+depends: \[(.*)\]", line)
        if m:
            edges += len(m.group(1).split(", "))
    return edges


def ninja_edges(text):
    edges = 0
    for line in text.splitlines():
        if line.startswith("build ") and " | " in line:
            edges += len(line.split(" | ", 1)[1].split())
    return edges


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--yaml-loader", required=True)
    parser.add_argument("--sluice", default="")
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="sluice-gen-dag-") as tmp:
        for case, edges in zip(CASES, EXPECTED_EDGES):
            d = os.path.join(tmp, "_".join(c.strip("-") for c in case))
            run([sys.executable, os.path.join(HERE, "gen_dag.py"), *case, "--dir", d])
            n = int(case[case.index("--n") + 1])
            shape = json.load(open(os.path.join(d, "shape.json")))
            dry = run(["ninja", "-n", "-f", os.path.join(d, "build.ninja")], cwd=d)
            commands = len([l for l in dry.splitlines() if re.match(r"\[\d+/\d+\]", l)])
            loaded = run([args.yaml_loader, os.path.join(d, "pipeline.yaml")])
            yaml_text = open(os.path.join(d, "pipeline.yaml")).read()
            ninja_text = open(os.path.join(d, "build.ninja")).read()
            checks = {
                "shape.json edges": (shape["edges"], edges),
                "ninja would run": (commands, n),
                "yaml-cpp steps": (loaded.split()[0], f"steps={n}"),
                "yaml edges": (yaml_edges(yaml_text), edges),
                "ninja edges": (ninja_edges(ninja_text), edges),
            }
            if args.sluice:
                lint = subprocess.run([args.sluice, "lint", os.path.join(d, "pipeline.yaml")],
                                      capture_output=True, text=True)
                checks["sluice lint exit code"] = (lint.returncode, 0)
            for what, (got, want) in checks.items():
                if got != want:
                    print(f"FAIL {' '.join(case)}: {what}: got {got!r}, want {want!r}")
                    failures += 1
            print(f"ok   {' '.join(case)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
