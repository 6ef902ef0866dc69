#!/usr/bin/env python3
"""Step `register`: put the selected model into a model registry directory.

Writes into --registry: model.pkl and manifest.json ({name, file, sha256,
size_bytes, metrics, versions}). Metrics come from --metrics (a JSON object or
a path to one) or, when absent, from metrics.json beside --model if there is one.
The manifest has no timestamp, so the same model gives the same bytes.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import sys


def fail(message):
    print(f"register: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_metrics(arg, model_path):
    if arg:
        text = arg
        if not arg.lstrip().startswith("{"):
            if not os.path.isfile(arg):
                fail(f"--metrics {arg}: neither a JSON object nor an existing file")
            with open(arg) as f:
                text = f.read()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            fail(f"--metrics is not valid JSON: {e}")
        if not isinstance(value, dict):
            fail("--metrics must be a JSON object")
        return value
    beside = os.path.join(os.path.dirname(model_path), "metrics.json")
    if os.path.isfile(beside):
        with open(beside) as f:
            return json.load(f)
    return {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model file to register")
    parser.add_argument("--name", required=True, help="the model's name, e.g. random_forest")
    parser.add_argument("--registry", required=True, help="registry directory to write")
    parser.add_argument("--metrics", default="", help="JSON object, or a path to one (optional)")
    args = parser.parse_args()

    name = args.name.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        fail(f"--name {args.name!r} is not a valid model name (letters, digits, _ . -)")
    if not os.path.isfile(args.model):
        fail(f"--model {args.model} does not exist")
    metrics = load_metrics(args.metrics, args.model)

    digest = hashlib.sha256()
    with open(args.model, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    os.makedirs(args.registry, exist_ok=True)
    shutil.copyfile(args.model, os.path.join(args.registry, "model.pkl"))

    import joblib
    import sklearn
    manifest = {
        "name": name,
        "file": "model.pkl",
        "sha256": digest.hexdigest(),
        "size_bytes": os.path.getsize(args.model),
        "metrics": metrics,
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "joblib": joblib.__version__,
        },
    }
    with open(os.path.join(args.registry, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"register: registered {name} (sha256 {digest.hexdigest()[:12]}) in {args.registry}")


if __name__ == "__main__":
    main()
