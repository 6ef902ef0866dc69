"""A PyTorchJob replica that checks the training-operator's env contract and
meets its peers at MASTER_ADDR:MASTER_PORT, as torch.distributed would.

rank 0 listens there, collects every other rank and answers each "ok"; then
it writes the sorted ranks, comma-separated, to master.out in its working dir.
Other ranks connect, send their rank and wait for the answer.
"""
import os
import socket
import sys
import time

rank = int(os.environ["RANK"])
world = int(os.environ["WORLD_SIZE"])
addr = os.environ["MASTER_ADDR"]
port = int(os.environ["MASTER_PORT"])
assert os.environ["PET_MASTER_ADDR"] == addr
assert os.environ["PET_MASTER_PORT"] == str(port)
assert os.environ["PET_NODE_RANK"] == str(rank)
assert int(os.environ["PET_NNODES"]) * int(os.environ["PET_NPROC_PER_NODE"]) == world
assert 0 <= rank < world, f"rank {rank} outside world {world}"

if rank == 0:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(world)
    peers, ranks = [], []
    while len(ranks) < world - 1:
        conn, _ = s.accept()
        ranks.append(int(conn.makefile().readline()))
        peers.append(conn)
    assert len(set(ranks)) == world - 1, f"duplicate ranks: {ranks}"
    for conn in peers:
        conn.sendall(b"ok\n")
        conn.close()
    with open("master.out", "w") as f:
        f.write(",".join(str(r) for r in sorted(ranks)))
    print(f"rank 0: met ranks {sorted(ranks)}", flush=True)
else:
    end = time.monotonic() + 60
    while True:
        try:
            c = socket.create_connection((addr, port), timeout=30)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)  # the master has not bound its port yet
    c.sendall(f"{rank}\n".encode())
    answer = c.makefile().readline().strip()
    if answer != "ok":
        sys.exit(f"rank {rank}: master answered {answer!r}")
    print(f"rank {rank}: joined", flush=True)
