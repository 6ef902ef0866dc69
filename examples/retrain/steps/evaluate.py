#!/usr/bin/env python3
"""Step `evaluate`: score one trained candidate on the held-out test split.

--models is the fan-in of every `train` instance's model, as a JSON list of
paths, in the order of --names; --name picks this instance's.
Writes metrics.json ({"accuracy", "f1", "roc_auc"}) and accuracy.txt.
"""
import argparse
import json
import os
import sys


def fail(message):
    print(f"evaluate: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_list(flag, text):
    text = text.strip()
    if not text.startswith("["):
        return [text]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{flag} is not a JSON list: {e}: {text[:200]!r}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(f"{flag} must be a JSON list of strings, got {text[:200]!r}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the candidate to score, one of --names")
    parser.add_argument("--names", required=True, help='JSON list of candidate names, in --models order')
    parser.add_argument("--models", required=True, help='JSON list of model paths, e.g. \'["/a/model.pkl"]\'')
    parser.add_argument("--data", required=True, help="directory written by prepare.py")
    parser.add_argument("--out-dir", default=".", help="where to write metrics.json and accuracy.txt")
    args = parser.parse_args()

    models = parse_list("--models", args.models)
    names = parse_list("--names", args.names)
    if len(names) != len(models):
        fail(f"--names has {len(names)} entries but --models has {len(models)}")
    if args.name not in names:
        fail(f"--name {args.name!r} is not one of --names {names}")
    model_path = models[names.index(args.name)]
    if not os.path.isfile(model_path):
        fail(f"model file {model_path} does not exist")
    test_path = os.path.join(args.data, "test.csv")
    if not os.path.isfile(test_path):
        fail(f"--data {args.data}: no test.csv there; pass the directory prepare.py wrote")

    import joblib
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    table = np.loadtxt(test_path, delimiter=",", skiprows=1, ndmin=2)
    X, y = table[:, :-1], table[:, -1].astype(int)
    model = joblib.load(model_path)
    predicted = model.predict(X)
    scores = model.predict_proba(X)[:, 1]
    metrics = {
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "f1": round(float(f1_score(y, predicted)), 6),
        "roc_auc": round(float(roc_auc_score(y, scores)), 6),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out_dir, "accuracy.txt"), "w") as f:
        f.write(f"{metrics['accuracy']}\n")
    print(f"evaluate: {args.name}: accuracy {metrics['accuracy']:.4f}, f1 {metrics['f1']:.4f}, "
          f"roc_auc {metrics['roc_auc']:.4f} on {len(y)} test rows")


if __name__ == "__main__":
    main()
