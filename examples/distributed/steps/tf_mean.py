#!/usr/bin/env python3
"""tfjob replica: the mean of one feature, sharded over the workers.

Reads TF_CONFIG as the training-operator writes it. The ps serves the number
of shards; each worker fetches it, sums its shard (rows index, index + shards,
...) and reports (sum, count) to the chief, which writes {"mean", "rows",
"workers"} to --out. The ps runs until it is stopped.
"""
import argparse
import json
import os
import socket
import sys
import time


def fail(message):
    print(f"tf_mean: error: {message}", file=sys.stderr)
    sys.exit(2)


def split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def listen(address):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(split(address))
    s.listen(16)
    return s


def connect(address):
    deadline = time.monotonic() + 120
    while True:
        try:
            return socket.create_connection(split(address), timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                fail(f"cannot reach {address}")
            time.sleep(0.05)  # the peer is still starting


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    try:
        config = json.loads(os.environ["TF_CONFIG"])
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (KeyError, ValueError) as e:
        fail(f"TF_CONFIG is missing or malformed ({e}); run this as a tfjob step")
    workers = cluster.get("worker", [])
    me = f"{kind}-{index}"

    if kind == "ps":
        server = listen(cluster["ps"][index])
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(f"{len(workers)}\n".encode())
    elif kind == "worker":
        with connect(cluster["ps"][0]) as c:
            shards = int(c.makefile().readline())
        from sklearn.datasets import load_breast_cancer
        data = load_breast_cancer()
        names = list(data.feature_names)
        if args.feature not in names:
            fail(f"unknown --feature {args.feature!r}; expected one of {', '.join(names)}")
        column = data.data[index::shards, names.index(args.feature)]
        with connect(cluster["chief"][0]) as c:
            c.sendall((json.dumps({"sum": float(column.sum()), "count": int(column.size)}) + "\n").encode())
        print(f"{me}: sent {column.size} rows of {shards} shards", flush=True)
    elif kind == "chief":
        server = listen(cluster["chief"][0])
        parts = []
        while len(parts) < len(workers):
            conn, _ = server.accept()
            with conn:
                parts.append(json.loads(conn.makefile().readline()))
        rows = sum(p["count"] for p in parts)
        stats = {"mean": sum(p["sum"] for p in parts) / rows, "rows": rows, "workers": len(workers)}
        with open(args.out, "w") as f:
            json.dump(stats, f, sort_keys=True)
            f.write("\n")
        print(f"{me}: mean {args.feature} = {stats['mean']:.6f} over {rows} rows", flush=True)
    else:
        print(f"{me}: nothing to do for replica type {kind}")


if __name__ == "__main__":
    main()
