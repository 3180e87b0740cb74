"""Loopback ports: pick a free one, or check that a chosen one is free before starting a server on it."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"
"""Every server `batchyard up` starts listens here only."""


class PortInUse(Exception):
    """A port that `batchyard up` needs is already taken."""

    def __init__(self, port: int, flag: str) -> None:
        super().__init__(f"port {port} on {LOOPBACK} is already in use (choose another with {flag})")
        self.port = port
        self.flag = flag


def free_port() -> int:
    """A port on the loopback address that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def is_free(port: int) -> bool:
    """True when a server could listen on the port; SO_REUSEADDR as servers set it, so TIME_WAIT does not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def require_free(port: int, flag: str) -> None:
    """Raise PortInUse naming the port and the flag that chooses it when the port is taken."""
    if not is_free(port):
        raise PortInUse(port, flag)
