"""Before a gateway serves: no other gateway serves this home, and its address is free.

Both are checked before the store is opened, so a gateway that cannot start changes nothing,
and each failure says what to do about it.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from clawgate.errors import ClawgateError
from clawgate.gateway import state as gateway_state
from clawgate.gateway.settings import GatewaySettings


class GatewayFailed(ClawgateError):
    """The gateway could not start (or stopped) for a reason it states."""


class AlreadyServed(GatewayFailed):
    """Another gateway process serves this home."""

    def __init__(self, home: Path, running: gateway_state.GatewayState) -> None:
        self.running = running
        super().__init__(
            f"a gateway is already running for {home}: {running.url} (pid {running.pid}); "
            "stop it first to start another here")


class CannotListen(GatewayFailed):
    """The address to listen on is taken, or not this machine's."""


async def check_home_free(home: Path, state_path: Path, database: Path) -> None:
    """Refuse when the home's state file names another live gateway of this database that
    answers."""
    running = gateway_state.read(state_path, database)
    if running is None or running.pid == os.getpid() or not gateway_state.alive(running.pid):
        return  # none, a stale file, or this process's (tests run several in one process)
    if await gateway_state.answers(running.url):
        raise AlreadyServed(home, running)


def bind(listen: GatewaySettings) -> socket.socket:
    """A socket bound to the configured address (listening starts with the server)."""
    host, port = listen.host, listen.port
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _refusal(host, port, exc) from None
    return sock


def _refusal(host: str, port: int, exc: OSError) -> CannotListen:
    if exc.errno == errno.EADDRINUSE:
        return CannotListen(f"port {port} on {host} is in use (another gateway? "
                            "`clawgate gateway --port N` picks another)")
    if exc.errno == errno.EACCES:
        return CannotListen(f"not allowed to listen on port {port} on {host} (ports below "
                            "1024 need privileges; `clawgate gateway --port N` picks another)")
    return CannotListen(f"cannot listen on port {port} on {host}: {exc.strerror}")
