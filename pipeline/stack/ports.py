"""Free ports on 127.0.0.1 for the parts of the embedded stack.

Several stacks share a machine (tests, other engineers), so no part may listen on a default
port: every port is either set in settings or picked here. A picked port is free when picked;
another program can still take it before the part binds it, which the manager detects (the
part fails to bind) and answers with fresh ports.
"""

from __future__ import annotations

import random
import socket

HOST = "127.0.0.1"

# SeaweedFS derives some gRPC addresses as "HTTP port + 10000" regardless of flags, so its
# ports are taken in pairs (p, p + 10000), both below the kernel's ephemeral range.
GRPC_OFFSET = 10000
_PAIR_LOW, _PAIR_HIGH = 10000, 32767 - GRPC_OFFSET


def is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT counts as free, as for them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out distinct free ports; remembers what it handed out so far."""

    def __init__(self, host: str = HOST, taken: set[int] | None = None) -> None:
        self.host = host
        self.taken: set[int] = set(taken or ())

    def one(self) -> int:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                port = int(sock.getsockname()[1])
            if port not in self.taken:
                self.taken.add(port)
                return port
        raise RuntimeError("no free port found")  # pragma: no cover - the kernel always has one

    def pair(self) -> int:
        """A port ``p`` with ``p`` and ``p + 10000`` both free; both are marked taken."""
        rng = random.SystemRandom()
        for _ in range(500):
            port = rng.randint(_PAIR_LOW, _PAIR_HIGH)
            grpc = port + GRPC_OFFSET
            if port in self.taken or grpc in self.taken:
                continue
            if is_free(port, self.host) and is_free(grpc, self.host):
                self.taken.update((port, grpc))
                return port
        raise RuntimeError("no free port pair found")  # pragma: no cover
