"""``clawgate gateway``: run the daemon; ``clawgate gateway token``: show its token."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from clawgate.cli.common import OK, PROBLEM
from clawgate.config import Settings
from clawgate.gateway import auth
from clawgate.gateway.settings import Auth


async def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "token":
        if settings.gateway.auth is Auth.NONE:
            print('clawgate: this gateway needs no token ([gateway] auth = "none" in '
                  f"{settings.config_path})", file=sys.stderr)
            return PROBLEM
        print(auth.load_or_create(settings.token_path))
        return OK
    from clawgate.gateway.server import serve  # the web stack only when serving

    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    gateway = dataclasses.replace(settings.gateway, **changes)
    return await serve(dataclasses.replace(settings, gateway=gateway))
