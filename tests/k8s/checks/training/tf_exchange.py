#!/usr/bin/env python3
"""tfjob replica: the chief gathers a number from every worker.

Reads TF_CONFIG as the training-operator writes it: the cluster spec names
each replica by its Service's DNS name and port. Worker i listens on its own
port and contributes 7 * (i + 1); the chief resolves and connects to every
worker address in the spec, reads each number, and sends every worker the
total; each worker logs it and answers whether it is the sum it expects.
Each replica exits 0 only if the total is right (the chief: and every
worker agreed).
"""
import json
import os
import sys

from peer import connect, listen, say


def contribution(index):
    return 7 * (index + 1)


def split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def main():
    config = json.loads(os.environ["TF_CONFIG"])
    cluster, task = config["cluster"], config["task"]
    kind, index = task["type"], int(task["index"])
    workers = cluster["worker"]
    want = sum(contribution(i) for i in range(len(workers)))

    if kind == "worker":
        server = listen(split(workers[index])[1], 1)
        conn, _ = server.accept()
        f = conn.makefile("rw")
        f.write(f"{index} {contribution(index)}\n")
        f.flush()
        total = int(f.readline())
        ok = total == want
        say(f"worker {index}: sent {contribution(index)}, sum {total} from the chief, "
            f"{'as expected' if ok else f'want {want}'}")
        f.write("ok\n" if ok else "wrong\n")
        f.flush()
        sys.exit(0 if ok else 1)
    if kind != "chief":
        say(f"{kind} {index}: nothing to do")
        return

    say(f"chief: {len(workers)} workers in TF_CONFIG")
    peers, got = [], {}
    for i, address in enumerate(workers):
        host, port = split(address)
        # A worker's name resolves once its pod is ready.
        _, f = connect(host, port, "chief", f"worker {i}")
        r, n = (int(x) for x in f.readline().split())
        if r != i:
            say(f"chief: worker {i} at {address} says it is worker {r}")
            sys.exit(1)
        got[i] = n
        peers.append(f)
        say(f"chief: worker {i} ({host}) sent {n}")
    total = sum(got.values())
    for f in peers:
        f.write(f"{total}\n")
        f.flush()
    # Each worker answers whether the total is what it expects, after it has
    # logged it, so the chief (whose success ends the job) ends last.
    acks = [f.readline().strip() for f in peers]
    ok = total == want
    terms = " + ".join(str(got[i]) for i in sorted(got))
    say(f"chief: sum {total} = {terms} over {len(workers)} workers, {'as expected' if ok else f'want {want}'}")
    say(f"chief: {acks.count('ok')} of {len(workers)} workers agree")
    sys.exit(0 if ok and acks.count("ok") == len(workers) else 1)


if __name__ == "__main__":
    main()
