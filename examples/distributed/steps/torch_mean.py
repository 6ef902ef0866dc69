#!/usr/bin/env python3
"""pytorchjob replica: the mean of one feature, sharded by RANK over WORLD_SIZE.

Reads the training-operator's contract (MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
RANK), or, as a trainjob node, Kubeflow Trainer's torch runtime's (torchrun's
PET_MASTER_ADDR, PET_MASTER_PORT, PET_NNODES, PET_NODE_RANK; one process per
node). Each rank sums rows rank, rank + world, ...; ranks > 0 send their
partial (sum, count) to rank 0 at the master's address, which writes
{"mean", "rows", "world_size"} to --out.
"""
import argparse
import json
import os
import socket
import sys
import time


def fail(message):
    print(f"torch_mean: error: {message}", file=sys.stderr)
    sys.exit(2)


def env(name):
    """The training-operator's variable, else the Trainer's PET_ one."""
    trainer = {"RANK": "PET_NODE_RANK", "WORLD_SIZE": "PET_NNODES"}.get(name, "PET_" + name)
    return os.environ.get(name, os.environ.get(trainer))


def env_int(name):
    value = env(name)
    if value is None or not value.isdigit():
        fail(f"{name} is not set to an integer; run this as a pytorchjob or trainjob step")
    return int(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rank, world = env_int("RANK"), env_int("WORLD_SIZE")
    addr, port = env("MASTER_ADDR") or "", env_int("MASTER_PORT")
    if not addr:
        fail("MASTER_ADDR is not set; run this as a pytorchjob or trainjob step")

    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    names = list(data.feature_names)
    if args.feature not in names:
        fail(f"unknown --feature {args.feature!r}; expected one of {', '.join(names)}")
    column = data.data[rank::world, names.index(args.feature)]
    partial = {"sum": float(column.sum()), "count": int(column.size)}
    print(f"rank {rank}/{world}: {partial['count']} rows", flush=True)

    if rank == 0:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((addr, port))
        server.listen(world)
        parts = {0: partial}
        while len(parts) < world:
            conn, _ = server.accept()
            with conn:
                message = json.loads(conn.makefile().readline())
                parts[message["rank"]] = message
        total = sum(p["sum"] for p in parts.values())
        rows = sum(p["count"] for p in parts.values())
        stats = {"mean": total / rows, "rows": rows, "world_size": world}
        with open(args.out, "w") as f:
            json.dump(stats, f, sort_keys=True)
            f.write("\n")
        print(f"rank 0: mean {args.feature} = {stats['mean']:.6f} over {rows} rows", flush=True)
        return
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > deadline:
                fail(f"cannot reach rank 0 at {addr}:{port}")
            time.sleep(0.05)  # rank 0 is still starting
    with conn:
        conn.sendall((json.dumps(dict(partial, rank=rank)) + "\n").encode())


if __name__ == "__main__":
    main()
