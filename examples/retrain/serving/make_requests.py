#!/usr/bin/env python3
"""Turn the held-out test split written by steps/prepare.py into a JSONL
request set for the traffic-validation operator:

  {"input": [f1, ..., f30], "label": 0|1}     one line per test row

Usage: make_requests.py --data DIR --out requests.jsonl [--limit N]
"""
import argparse
import json
import os
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="directory written by prepare.py")
    parser.add_argument("--out", required=True, help="JSONL file to write")
    parser.add_argument("--limit", type=int, default=0, help="at most this many rows (0 = all)")
    args = parser.parse_args()
    path = os.path.join(args.data, "test.csv")
    if not os.path.isfile(path):
        print(f"make_requests: error: --data {args.data}: no test.csv there; pass the "
              f"directory prepare.py wrote", file=sys.stderr)
        sys.exit(2)
    count = 0
    with open(path) as f, open(args.out, "w") as out:
        header = f.readline().strip().split(",")
        if header[-1] != "target":
            print(f"make_requests: error: {path}: last column is {header[-1]!r}, want 'target'",
                  file=sys.stderr)
            sys.exit(2)
        for line in f:
            if not line.strip():
                continue
            values = [float(v) for v in line.strip().split(",")]
            out.write(json.dumps({"input": values[:-1], "label": int(values[-1])}) + "\n")
            count += 1
            if args.limit and count >= args.limit:
                break
    print(f"make_requests: wrote {count} requests to {args.out}")


if __name__ == "__main__":
    main()
