"""Finding a running gateway, so that the CLI talks to it instead of working in-process.

A gateway writes ``$CLAWGATE_HOME/gateway.json`` while it runs. The CLI uses it when that
file names a live process and the gateway accepts a connection; otherwise (no gateway, one
that crashed and left the file, or one that does not answer) the command runs in-process.
Either way it says which, and why, in one line on stderr, so stdout stays the command's own
output. What is typed is checked before it is sent (``check_line``), so that either way it is
refused in the same words. A gateway reads config.toml and the keys once, when it starts:
when this command sees them otherwise (the file was edited, a key exported in this shell
since), it says so once, on stderr, and that a restart of the gateway uses the change.
"""

from __future__ import annotations

import sys

from clawgate.config import Settings
from clawgate.domain import NewInbound, check_inbound
from clawgate.gateway import state as gateway_state
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.gateway.settings import Auth
from clawgate.runtime import commands

CONNECT_WITHIN_S = 2.0
CHANGED = {"config.toml": "a different config.toml",
           "keys": "a different environment (the API keys it could read differ from this "
                   "shell's)"}


async def connect_gateway(settings: Settings) -> GatewayClient | None:
    """A connection to this home's running gateway, or None to work in-process.

    Either way it says which on stderr, in one line: via the gateway, or in-process and why.
    """
    state = gateway_state.live(settings.gateway_state, settings.database)
    if state is None:
        say("in-process: no gateway is running")
        return None
    try:
        client = await GatewayClient.connect(state.url, _token(settings, state.url),
                                             open_within=CONNECT_WITHIN_S)
    except GatewayError as exc:  # a stalled, refusing or half-started gateway
        say(f"in-process: {exc}")
        return None
    say(f"via the gateway at {state.url}")
    warn_if_changed(settings, state)
    return client


def warn_if_changed(settings: Settings, state: gateway_state.GatewayState | None = None
                    ) -> None:
    """Say (on stderr) when the home's running gateway (``state``; by default, whichever
    runs) started with another config.toml or other keys than this command sees."""
    state = state or gateway_state.live(settings.gateway_state, settings.database)
    change = None if state is None else state.fingerprint.change(settings.fingerprint)
    if state is None or change is None:
        return
    print(f"clawgate: the gateway at {state.url} (pid {state.pid}) was started with "
          f"{CHANGED[change]}; restart it to use the change", file=sys.stderr, flush=True)


def _token(settings: Settings, url: str) -> str | None:
    if settings.gateway.auth is not Auth.TOKEN:
        return None
    try:
        return settings.token_path.read_text().strip()
    except OSError as exc:
        raise GatewayError("no_token", f"the gateway at {url} needs the token, which cannot be "
                                       f"read from {settings.token_path} ({exc.strerror})"
                           ) from None


def say(text: str) -> None:
    print(f"({text})", file=sys.stderr, flush=True)


def check_line(text: str, channel: str, message_id: str | None) -> None:
    """Refuse (InvalidInput) a line the gateway would refuse, before anything is sent: a
    command it cannot parse, or a message the store would not accept, in the store's words.

    A message far over the limit would otherwise meet the gateway's frame limits first, and
    be refused as a frame (or end the connection) instead of as a message.
    """
    if commands.parse(text) is None:
        check_inbound(NewInbound(channel, text, message_id))
