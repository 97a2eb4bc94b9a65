"""A listening TCP socket for flowfence's HTTP servers (`receive`, `serve`), bound before the
server starts, so that a port in use or an address this machine does not have is one line
naming the address and exit 2, not the server's log and its own exit code."""

from __future__ import annotations

import socket

from flowfence.core.errors import ConfigError


def listen(host: str, port: int, who: str) -> socket.socket:
    """A socket listening on `host:port` (IPv6 when `host` has a colon), inheritable so the
    server's workers can take it; ConfigError naming `who` when it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if ":" in host else host
        raise ConfigError(f"{who}: cannot listen on {shown}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock
