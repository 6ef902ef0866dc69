#!/usr/bin/env python3
"""pytorchjob replica: a sum gathered at rank 0 over the operator's contract.

Reads MASTER_ADDR (the Master replica's Service name), MASTER_PORT,
WORLD_SIZE and RANK as the training-operator sets them. Rank r contributes
10 * (r + 1). Rank 0 listens on MASTER_PORT; every other rank resolves
MASTER_ADDR through the cluster DNS, connects, sends its rank and number and
waits for the total. Rank 0 checks that every rank of WORLD_SIZE sent once
and sends the total back; each rank logs it and answers whether it is the
sum it expects. Every replica exits 0 only if the total is right (rank 0:
and every rank agreed).
"""
import os
import sys

from peer import connect, listen, say


def contribution(rank):
    return 10 * (rank + 1)


def main():
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    want = sum(contribution(r) for r in range(world))
    if rank == 0:
        server = listen(port, world)
        say(f"rank 0 of {world}: listening on MASTER_PORT")
        peers, got = [], {0: contribution(0)}
        while len(peers) < world - 1:
            conn, _ = server.accept()
            f = conn.makefile("rw")
            r, n = (int(x) for x in f.readline().split())
            if r in got or not 0 < r < world:
                say(f"rank 0: unexpected rank {r}")
                sys.exit(1)
            got[r] = n
            peers.append(f)
        for r in sorted(got):
            if r:
                say(f"rank 0: rank {r} sent {got[r]}")
        total = sum(got.values())
        for f in peers:
            f.write(f"{total}\n")
            f.flush()
        # Each rank answers whether the total is what it expects, after it
        # has logged it, so rank 0 ends only after every rank has.
        acks = [f.readline().strip() for f in peers]
        terms = " + ".join(str(got[r]) for r in sorted(got))
        ok = total == want
        say(f"rank 0: sum {total} = {terms} over world size {world}, {'as expected' if ok else f'want {want}'}")
        say(f"rank 0: {acks.count('ok')} of {world - 1} ranks agree")
        sys.exit(0 if ok and acks.count("ok") == world - 1 else 1)

    # The Master's name resolves once its pod is ready.
    ip, f = connect(addr, port, f"rank {rank}", "MASTER_ADDR")
    say(f"rank {rank}: MASTER_ADDR {addr} is {ip}")
    f.write(f"{rank} {contribution(rank)}\n")
    f.flush()
    total = int(f.readline())
    ok = total == want
    say(f"rank {rank}: sent {contribution(rank)}, sum {total} from rank 0, {'as expected' if ok else f'want {want}'}")
    f.write("ok\n" if ok else "wrong\n")
    f.flush()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
