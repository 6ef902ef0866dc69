#!/usr/bin/env python3
"""Step `prepare`: split scikit-learn's bundled breast-cancer data set.

Writes into --out (a directory):
  train.csv, test.csv  features + "target" column, stratified split, fixed float format
  meta.json            feature/target names, split sizes, seed
  rows.txt             the number of rows in the data set (the step's output param)

Deterministic for a given --seed and --test-size: the files are byte-identical.
"""
import argparse
import json
import os
import sys


def fail(message):
    print(f"prepare: error: {message}", file=sys.stderr)
    sys.exit(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-size", type=float, default=0.25,
                        help="fraction of rows held out for evaluation, in (0, 1)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the split")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    if not 0.0 < args.test_size < 1.0:
        fail(f"--test-size must be between 0 and 1 (exclusive), got {args.test_size}")
    if args.seed < 0:
        fail(f"--seed must be >= 0, got {args.seed}")

    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()  # bundled with scikit-learn: no download
    X, y = data.data, data.target
    print(f"prepare: loaded breast-cancer data: {X.shape[0]} rows, {X.shape[1]} features, "
          f"classes {[str(n) for n in data.target_names]}")
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=args.test_size, random_state=args.seed, stratify=y)

    os.makedirs(args.out, exist_ok=True)
    header = ",".join([name.replace(" ", "_") for name in data.feature_names] + ["target"])
    for split, features, target in (("train", X_train, y_train), ("test", X_test, y_test)):
        table = np.column_stack([features, target])
        path = os.path.join(args.out, f"{split}.csv")
        np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.17g")
        print(f"prepare: wrote {path}: {len(target)} rows, {int(target.sum())} positive")
    meta = {
        "dataset": "sklearn.datasets.load_breast_cancer",
        "feature_names": [str(n) for n in data.feature_names],
        "target_names": [str(n) for n in data.target_names],
        "rows": int(X.shape[0]),
        "train_rows": int(len(y_train)),
        "test_rows": int(len(y_test)),
        "test_size": args.test_size,
        "seed": args.seed,
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(args.out, "rows.txt"), "w") as f:
        f.write(f"{X.shape[0]}\n")
    print(f"prepare: done: {len(y_train)} train / {len(y_test)} test rows in {args.out}")


if __name__ == "__main__":
    main()
