#!/usr/bin/env python3
"""Step `select`: pick the candidate with the best test accuracy.

(Not named select.py: that file would shadow Python's `select` module for
every script in this directory, and scikit-learn imports it.)

--names, --models and --accuracies are JSON lists in the same (item) order,
as sluice renders a foreach step's outputs; accuracies may be strings.
Ties go to the earlier candidate. Writes into --out: model.pkl (a copy of the
best model), name.txt and metrics.json ({"accuracy", "margin", "candidates"}).
"""
import argparse
import json
import os
import shutil
import sys


def fail(message):
    print(f"select: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_list(flag, text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{flag} is not a JSON list: {e}: {text[:200]!r}")
    if not isinstance(value, list) or not value:
        fail(f"{flag} must be a non-empty JSON list, got {text[:200]!r}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", required=True, help='JSON list of candidate names')
    parser.add_argument("--models", required=True, help='JSON list of model paths')
    parser.add_argument("--accuracies", required=True, help='JSON list of accuracies (numbers or strings)')
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()

    names = [str(n) for n in parse_list("--names", args.names)]
    models = parse_list("--models", args.models)
    raw = parse_list("--accuracies", args.accuracies)
    if not len(names) == len(models) == len(raw):
        fail(f"--names, --models and --accuracies must have the same length, got "
             f"{len(names)}, {len(models)} and {len(raw)}")
    accuracies = []
    for name, value in zip(names, raw):
        try:
            accuracies.append(float(value))
        except (TypeError, ValueError):
            fail(f"accuracy of {name} is not a number: {value!r}")
    for path in models:
        if not isinstance(path, str) or not os.path.isfile(path):
            fail(f"model file {path!r} does not exist")

    for name, acc in zip(names, accuracies):
        print(f"select: {name:<20} accuracy {acc:.4f}")
    best = max(range(len(names)), key=lambda i: (accuracies[i], -i))
    others = [a for i, a in enumerate(accuracies) if i != best]
    margin = accuracies[best] - max(others) if others else 0.0

    os.makedirs(args.out, exist_ok=True)
    shutil.copyfile(models[best], os.path.join(args.out, "model.pkl"))
    with open(os.path.join(args.out, "name.txt"), "w") as f:
        f.write(names[best] + "\n")
    metrics = {"accuracy": accuracies[best], "margin": round(margin, 6), "candidates": len(names)}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"select: best is {names[best]} with accuracy {accuracies[best]:.4f} "
          f"(margin {margin:+.4f} over the next)")


if __name__ == "__main__":
    main()
