#!/usr/bin/env python3
"""Step `train`: fit one candidate model family on the prepared training split.

--model is one of: logreg, random_forest, gradient_boosting.
--data is the directory written by prepare.py; --out the model file (joblib).
Deterministic for a given --seed.
"""
import argparse
import os
import sys

MODELS = ("logreg", "random_forest", "gradient_boosting")


def fail(message):
    print(f"train: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_split(data_dir, split):
    import numpy as np
    path = os.path.join(data_dir, f"{split}.csv")
    if not os.path.isfile(path):
        fail(f"--data {data_dir}: no {split}.csv there; pass the directory prepare.py wrote")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return table[:, :-1], table[:, -1].astype(int)


def build(name, seed):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=1)
    if name == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=150, random_state=seed)
    fail(f"unknown --model {name!r}; expected one of {', '.join(MODELS)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model family: " + ", ".join(MODELS))
    parser.add_argument("--data", required=True, help="directory written by prepare.py")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, help="where to write the fitted model (joblib)")
    args = parser.parse_args()
    if args.model not in MODELS:
        fail(f"unknown --model {args.model!r}; expected one of {', '.join(MODELS)}")

    import joblib
    X, y = load_split(args.data, "train")
    model = build(args.model, args.seed)
    print(f"train: fitting {args.model} on {X.shape[0]} rows x {X.shape[1]} features (seed {args.seed})")
    model.fit(X, y)
    train_accuracy = float(model.score(X, y))
    print(f"train: {args.model}: training accuracy {train_accuracy:.4f}")
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    joblib.dump(model, args.out)
    print(f"train: wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
