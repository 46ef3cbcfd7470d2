"""Finding a running gateway, so that the CLI talks to it instead of working in-process.

A gateway writes ``$CLAWGATE_HOME/gateway.json`` while it runs. The CLI uses it when that
file names a live process and the gateway accepts a connection; otherwise (no gateway, or
one that crashed and left the file) the command runs in-process. Either way it says which,
on stderr, so stdout stays the command's own output.
"""

from __future__ import annotations

import sys

from clawgate.config import Settings
from clawgate.gateway import state as gateway_state
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.gateway.settings import Auth

CONNECT_WITHIN_S = 2.0


async def connect_gateway(settings: Settings) -> GatewayClient | None:
    """A connection to this home's running gateway, or None when there is none."""
    state = gateway_state.live(settings.gateway_state, settings.database)
    if state is None:
        return None
    url = state.url
    token = None
    if settings.gateway.auth is Auth.TOKEN:
        try:
            token = settings.token_path.read_text().strip()
        except OSError:
            return None
    try:
        client = await GatewayClient.connect(url, token, open_within=CONNECT_WITHIN_S)
    except GatewayError as exc:
        say(f"a gateway is registered at {url} but {exc}; working in-process")
        return None
    say(f"via the gateway at {url}")
    return client


def in_process() -> None:
    say("in-process: no gateway is running")


def say(text: str) -> None:
    print(f"({text})", file=sys.stderr, flush=True)

