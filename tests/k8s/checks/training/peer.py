"""What the training exchange scripts share: logging and reaching a peer."""
import socket
import sys
import time


def say(message):
    """Prints one line of the replica's log at once."""
    print(message, flush=True)


def connect(host, port, who, what):
    """Resolves host (a replica's Service name) and connects to its port.

    Retries for up to 120 s: the name resolves once the peer's pod is ready,
    and the peer listens a moment after it starts. Returns the address and an
    open file on the connection; exits 1, saying so in the log (who: this
    replica, what: the peer), when the peer cannot be reached.
    """
    deadline = time.monotonic() + 120
    while True:
        try:
            ip = socket.gethostbyname(host)
            conn = socket.create_connection((ip, port), timeout=30)
            return ip, conn.makefile("rw")
        except OSError as e:
            if time.monotonic() > deadline:
                say(f"{who}: cannot reach {what} at {host}:{port}: {e}")
                sys.exit(1)
            time.sleep(0.2)


def listen(port, backlog):
    """A socket listening on port on every address of the pod."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("", port))
    server.listen(backlog)
    return server
