"""Ports on loopback: is one free, and find free ones for tests."""

from __future__ import annotations

import socket

from geoverdict_stack.exceptions import PortInUseError

HOST = "127.0.0.1"


def is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free(port: int, what: str) -> None:
    """Raise PortInUseError naming the port and its user when `port` is taken."""
    if not is_free(port):
        raise PortInUseError(
            f"port {port} for {what} is already in use; stop whatever listens there "
            f"(`ss -ltnp 'sport = :{port}'`) or use free ports (`geoverdict stack up --free-ports`)"
        )


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports that are free right now (bound together, so never the same)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def is_listening(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
