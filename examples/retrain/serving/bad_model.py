#!/usr/bin/env python3
"""Write a deliberately bad model for the rollback variant of examples/retrain:
a scikit-learn DummyClassifier that always predicts the minority class
(malignant, 0), so its accuracy on the held-out split is about 0.37 and the
traffic validation's min_accuracy threshold fails.

Usage: bad_model.py --data DIR --out model.pkl
"""
import argparse
import os
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory written by prepare.py")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    path = os.path.join(args.data, "train.csv")
    if not os.path.isfile(path):
        print(f"bad_model: error: --data {args.data}: no train.csv there", file=sys.stderr)
        sys.exit(2)
    import joblib
    import numpy as np
    from sklearn.dummy import DummyClassifier
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    model = DummyClassifier(strategy="constant", constant=0).fit(table[:, :-1], table[:, -1].astype(int))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    joblib.dump(model, args.out)
    print(f"bad_model: wrote an always-0 classifier to {args.out}")


if __name__ == "__main__":
    main()
