"""A TFJob replica that checks TF_CONFIG and talks to its peers over it.

ps:     listens on its address and answers "ps-<i>" to every connection, until
        it is stopped (as the training-operator stops parameter servers).
worker: asks every ps for its name, then tells the chief "worker-<i>".
chief:  listens on its address until every worker has reported, then writes
        the sorted names, comma-separated, to chief.out in its working dir.
FAIL_REPLICA=<type>-<i> makes that replica exit 3 after the env checks.
"""
import json
import os
import socket
import sys
import time

cfg = json.loads(os.environ["TF_CONFIG"])
cluster, task = cfg["cluster"], cfg["task"]
me = f"{task['type']}-{task['index']}"
assert os.environ["SLUICE_REPLICA_TYPE"] == task["type"], "SLUICE_REPLICA_TYPE mismatch"
assert os.environ["SLUICE_REPLICA_INDEX"] == str(task["index"]), "SLUICE_REPLICA_INDEX mismatch"
assert cfg["environment"] == "cloud"
print(f"{me}: TF_CONFIG ok", flush=True)
if os.environ.get("FAIL_REPLICA") == me:
    print(f"{me}: failing on purpose", file=sys.stderr)
    sys.exit(3)


def split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def listen(address):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(split(address))
    s.listen(16)
    return s


def connect(address, seconds=60):
    end = time.monotonic() + seconds
    while True:
        try:
            return socket.create_connection(split(address), timeout=30)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)  # the peer has not bound its port yet


if task["type"] == "ps":
    server = listen(cluster["ps"][task["index"]])
    while True:
        conn, _ = server.accept()
        conn.sendall(f"{me}\n".encode())
        conn.close()
elif task["type"] == "worker":
    for j, address in enumerate(cluster.get("ps", [])):
        with connect(address) as c:
            got = c.makefile().readline().strip()
            assert got == f"ps-{j}", f"expected ps-{j}, got {got!r}"
    with connect(cluster["chief"][0]) as c:
        c.sendall(f"{me}\n".encode())
    print(f"{me}: reported to chief", flush=True)
elif task["type"] == "chief":
    server = listen(cluster["chief"][0])
    names = []
    while len(names) < len(cluster.get("worker", [])):
        conn, _ = server.accept()
        names.append(conn.makefile().readline().strip())
        conn.close()
    with open("chief.out", "w") as f:
        f.write(",".join(sorted(names)))
    print(f"{me}: heard from {sorted(names)}", flush=True)
