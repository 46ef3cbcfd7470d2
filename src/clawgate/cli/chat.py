"""``clawgate chat``: the terminal channel on this machine's store."""

from __future__ import annotations

import argparse

from clawgate.channels.terminal import TerminalChat
from clawgate.cli.common import open_app
from clawgate.config import Settings
from clawgate.domain import check_key
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.scope import ServeKeys


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    async with open_app(settings) as app:
        runtime = Runtime(app.store, app.providers, settings.runtime,
                          scope=ServeKeys(app.store, frozenset({key})))
        await runtime.start()
        try:
            return await TerminalChat(runtime, key).run()
        finally:
            await runtime.close()
