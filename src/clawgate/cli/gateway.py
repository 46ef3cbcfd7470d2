"""``clawgate gateway``: run the daemon; ``clawgate gateway token``: show its token."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Coroutine
from typing import Any

from clawgate.cli.common import OK, PROBLEM
from clawgate.config import Settings
from clawgate.gateway import auth
from clawgate.gateway.settings import Auth


def main(args: argparse.Namespace, settings: Settings) -> int | Coroutine[Any, Any, int]:
    if args.action == "token":
        return token(settings)
    return run(args, settings)


def token(settings: Settings) -> int:
    """Print the token (made now if there is none yet): a file read, no event loop."""
    if settings.gateway.auth is Auth.NONE:
        print('clawgate: this gateway needs no token ([gateway] auth = "none" in '
              f"{settings.config_path})", file=sys.stderr)
        return PROBLEM
    print(auth.load_or_create(settings.token_path))
    return OK


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from clawgate.gateway.server import serve  # the web stack only when serving

    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    gateway = dataclasses.replace(settings.gateway, **changes)
    return await serve(dataclasses.replace(settings, gateway=gateway))
