"""Running the gateway: uvicorn on the configured address, until a signal says stop.

It refuses to start while another gateway serves the same home, or when its address is
taken. On start it writes ``$CLAWGATE_HOME/gateway.json`` (where it listens, its pid) so the
CLI can find it, and the fingerprint of the settings it started with, so that the CLI can say
when config.toml or the keys have changed since (the gateway reads both once, at start); on
a clean stop it removes it (if it still names this process). Its start banner warns when the
default model has no usable key. SIGINT and
SIGTERM shut down gracefully: no new messages (clients are told the gateway is shutting
down), turns in flight get the grace period, then end ``interrupted``; connections stay open
until their clients have been sent how their runs ended, then the server closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import FrameType

import uvicorn
from uvicorn.lifespan.on import LifespanOn

from clawgate.channels.chat_output import silence
from clawgate.clock import SystemClock
from clawgate.config import Settings
from clawgate.errors import ConfigError
from clawgate.gateway import auth, listen
from clawgate.gateway import state as gateway_state
from clawgate.gateway.app import Gateway, create_app
from clawgate.gateway.listen import GatewayFailed
from clawgate.gateway.settings import Auth
from clawgate.providers.registry import build
from clawgate.providers.settings import keyless, read_at_start
from clawgate.runtime.owner import running_here
from clawgate.runtime.runtime import Runtime
from clawgate.store.sqlite import SqliteStore

START_TIMEOUT_S = 30
CLOSE_CONNECTIONS_S = 5  # after the runs have ended: for responses still being written


@dataclass
class RunningGateway:
    url: str
    token: str | None
    runtime: Runtime
    server: uvicorn.Server
    serving: asyncio.Task[None]

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self.server.handle_exit(signal.SIGTERM, None)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningGateway]:
    """A gateway serving until the block ends (or a signal stops it).

    It refuses to start (GatewayFailed, having changed nothing) when another gateway serves
    this home or the address is taken.
    """
    config = settings.gateway
    if config.auth is Auth.NONE and not config.loopback:
        raise ConfigError(f"refusing to listen on {config.host} without a token (use "
                          'auth = "token", or a loopback address such as 127.0.0.1)',
                          key="gateway.auth", path=str(settings.config_path))
    await listen.check_home_free(settings.home, settings.gateway_state, settings.database)
    sock = listen.bind(config)
    try:
        async with _serving(settings, sock) as gateway:
            yield gateway
    finally:
        sock.close()


@asynccontextmanager
async def _serving(settings: Settings, sock: socket.socket) -> AsyncIterator[RunningGateway]:
    config = settings.gateway
    token = None if config.auth is Auth.NONE else auth.load_or_create(settings.token_path)
    clock = SystemClock()
    store = await SqliteStore.open(settings.database, clock, running_here(clock.now()),
                                     settings.runtime.poll_interval)
    providers = read_at_start(settings.providers, f"the gateway (pid {os.getpid()})")
    runtime = Runtime(store, build(providers, clock), settings.runtime, name="the gateway")
    gateway = Gateway(runtime, settings, token)
    server = _Server(gateway, uvicorn.Config(
        create_app(gateway), host=config.host, port=config.port,
        ws="websockets-sansio", lifespan="on", log_level="warning", access_log=False,
        # frames are small JSON events: compressing each one cost more CPU than it saved
        ws_per_message_deflate=False,
        ws_max_size=unread_frame_limit(config.max_frame_bytes),
        timeout_graceful_shutdown=CLOSE_CONNECTIONS_S,
    ))
    serving = asyncio.create_task(_serve(server, sock), name="clawgate gateway")
    try:
        if not await _started(server, serving):
            raise GatewayFailed(f"the gateway could not start on {config.url} (see above)")
        url = _url(config.host, sock.getsockname()[1])
        gateway_state.write(settings.gateway_state, url, settings.database,
                            settings.fingerprint)
        yield RunningGateway(url, token, runtime, server, serving)
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        gateway_state.remove(settings.gateway_state)
        await store.close()


async def serve(settings: Settings) -> int:
    async with running(settings) as gateway:
        _banner(gateway.url, gateway.token, settings.runtime.shutdown_grace)
        warning = keys_warning(settings)
        if warning is not None:
            _say(f"warning: {warning}")
        await gateway.serving
    _say("clawgate gateway stopped")
    return 0


def keys_warning(settings: Settings) -> str | None:
    """What to say when the default model has no usable key (its turns go to a fallback,
    or, when none of those has one either, fail); None when it has one."""
    configs = {c.name: c for c in settings.providers}
    default, *fallbacks = (settings.runtime.default_model,
                           *settings.runtime.routing.fallbacks)
    why = keyless(configs[default.provider])
    if why is None:
        return None
    usable = [str(m) for m in fallbacks if keyless(configs[m.provider]) is None]
    then = (f"its turns go to {usable[0]}" if usable else
            "no fallback has one either, so every turn fails")
    return (f"the default model {default} has no usable key ({why}): {then}. This gateway "
            "reads keys only now, at start: set the key, then restart it")


def unread_frame_limit(max_frame_bytes: int) -> int:
    """Frames up to this size are read and, over ``max_frame_bytes``, answered with an error;
    larger ones close the connection (1009) without being read."""
    return max(16 * 1024 * 1024, 4 * max_frame_bytes)


class _Server(uvicorn.Server):
    """uvicorn, but stop signals always end in the app's own orderly shutdown.

    The first SIGINT or SIGTERM drains the gateway while connections stay open (turns in
    flight finish or end ``interrupted``, and clients are told), then stops the server; a
    second one cuts the grace period short but the app still records how every run ended
    and closes the store. uvicorn alone would close connections first, skip the app's
    shutdown on a second Ctrl-C, and re-raise the signal, ending the process before the
    state file is removed and the store closed.
    """

    def __init__(self, gateway: Gateway, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._draining: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None and not self.should_exit:
            _say(f"stopping: turns in progress get {self._gateway.grace:g} s to finish "
                 "(Ctrl-C again to end them now)")
            if not self.started:  # nothing to drain yet
                self.should_exit = True
                return
            self._draining = asyncio.get_running_loop().create_task(
                self._drain(), name="clawgate gateway drain")
            return
        _say("stopping now: turns in progress end as interrupted")
        self.force_exit = True  # stop waiting for connections
        self._gateway.hurry()

    async def _drain(self) -> None:
        try:
            await self._gateway.drain()
        finally:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._gateway.begin_shutdown()  # one grace period, shared with waiting connections
        await super().shutdown(sockets)
        lifespan = self.lifespan
        if isinstance(lifespan, LifespanOn) and not lifespan.shutdown_event.is_set():
            await lifespan.shutdown()  # skipped by uvicorn after a second signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or not this platform: the caller stops us
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn exits the process when its start fails (the app's start-up failed, and it
    logged why); here that is an error of this task instead."""
    try:
        await server.serve([sock])
    except SystemExit:
        raise GatewayFailed("the gateway could not start (see above)") from None


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> bool:
    async with asyncio.timeout(START_TIMEOUT_S):
        while not server.started:
            if serving.done():
                return False
            await asyncio.sleep(0.02)
    return True


def _url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _say(text: str) -> None:
    """Tell the operator (on stderr). If it is gone (``clawgate gateway 2>&1 | tee log``,
    and Ctrl-C ended tee too), what was being done goes on: stderr is pointed at /dev/null
    so that nothing fails on it again."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        silence(sys.stderr)


def _banner(url: str, token: str | None, grace: float) -> None:
    print(f"clawgate gateway listening on {url}", flush=True)
    chat = f"{url}/#token={token}" if token else f"{url}/"
    print(f"web chat: {chat}", flush=True)
    _say(f"stop with Ctrl-C (turns in progress get {grace:g} s to finish)")
