"""What every command shares: opening the settings, store and providers; errors and exits.

The store, the providers and the event loop are imported when a command uses them, not
before: a command that only reads a file (``clawgate gateway token``) loads none of them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from clawgate import config
from clawgate.errors import ClawgateError, ConfigError, InvalidInput
from clawgate.providers.settings import secrets
from clawgate.redaction import RedactingFormatter, redact

if TYPE_CHECKING:
    from clawgate.providers.routing import ProviderEntry
    from clawgate.store.sqlite import SqliteStore

# Exit codes shared by the commands.
OK = 0
PROBLEM = 1  # the thing asked for did not happen (a run failed, doctor found problems)
USAGE = 2  # bad arguments, bad config, bad input

FULL_LOG = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # the gateway's, and -v
PLAIN_LOG = "clawgate: %(message)s"  # a command's notices at default verbosity


@dataclass(frozen=True, slots=True)
class App:
    settings: config.Settings
    store: SqliteStore
    providers: dict[str, ProviderEntry]


@asynccontextmanager
async def open_app(settings: config.Settings) -> AsyncIterator[App]:
    from clawgate.clock import SystemClock
    from clawgate.providers.registry import build
    from clawgate.runtime.owner import running_here
    from clawgate.store.sqlite import SqliteStore

    clock = SystemClock()
    store = await SqliteStore.open(settings.database, clock, running_here(clock.now()),
                                 settings.runtime.poll_interval)
    try:
        yield App(settings, store, build(settings.providers, store.clock))
    finally:
        await store.close()


#: A command's ``main``: an exit code at once, or a coroutine to run for one.
Command = Callable[[argparse.Namespace, config.Settings], int | Coroutine[Any, Any, int]]


def run_command(module: ModuleType, args: argparse.Namespace) -> int:
    """Load the settings (before any event loop: it is file I/O), then run the command."""
    try:
        settings = config.load(Path(args.home).expanduser() if args.home else None)
    except ConfigError as exc:
        _log_to_stderr(args.verbose, [], plain=args.command != "gateway")
        on_error = getattr(module, "on_config_error", None)
        if on_error is not None:
            return int(on_error(args, exc))
        print(f"clawgate: {exc}", file=sys.stderr)
        return USAGE
    keys = secrets(settings.providers)
    _log_to_stderr(args.verbose, keys, plain=args.command != "gateway")
    command: Command = module.main
    try:
        outcome = command(args, settings)
        if isinstance(outcome, int):
            return outcome
        import asyncio

        return asyncio.run(outcome)
    except (InvalidInput, ConfigError) as exc:
        print(f"clawgate: {redact(str(exc), keys)}", file=sys.stderr)
        return USAGE
    except ClawgateError as exc:
        print(f"clawgate: {redact(str(exc), keys)}", file=sys.stderr)
        return PROBLEM
    except KeyboardInterrupt:
        return 130


def _log_to_stderr(verbose: int, keys: list[str], plain: bool = False) -> None:
    """Logging for the CLI: warnings by default, -v info, -vv debug; never a key.

    A command (``plain``) at default verbosity says what happened as any of its notices,
    ``clawgate: ...``; the gateway's log, and -v, keep the time, level and logger.
    """
    handler = logging.StreamHandler()
    form = PLAIN_LOG if plain and verbose == 0 else FULL_LOG
    handler.setFormatter(RedactingFormatter(form, keys))
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, handlers=[handler], force=True)

