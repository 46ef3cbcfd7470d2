"""The ``clawgate`` command. Only argparse (and the bare ``limits``) is imported up front, so
``--help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from clawgate import __version__
from clawgate.limits import SESSION_ROWS, SESSIONS_LISTED

COMMANDS = {
    "chat": "clawgate.cli.chat",
    "agent": "clawgate.cli.agent",
    "stop": "clawgate.cli.stop",
    "sessions": "clawgate.cli.sessions",
    "doctor": "clawgate.cli.doctor",
    "models": "clawgate.cli.models",
    "gateway": "clawgate.cli.gateway",
}
#: GatewaySettings' defaults, for the help (a test checks they agree); that module is not
#: imported here, as its imports would slow --help down.
GATEWAY_HOST, GATEWAY_PORT = "127.0.0.1", 18789
JSON_HELP = "print the result as JSON"
HOME_HELP = "state folder (overrides $CLAWGATE_HOME)"
VERBOSE_HELP = "log more (-vv: debug)"
PROBE_TIMEOUT_S = 30.0  # models test: how long one profile may take to answer
#: The exit code when stdout's reader left early (``clawgate sessions list | head -3``): what
#: a shell reports for a command that SIGPIPE ended (128 + 13), as most Unix tools end.
READER_GONE = 141
INTERRUPTED = 130  # Ctrl-C, as a shell reports it


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="clawgate",
        description="A personal AI-assistant gateway whose conversations cannot wedge.",
        epilog="State lives in $CLAWGATE_HOME (default ~/.clawgate).",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top.add_argument("--home", help=HOME_HELP)
    top.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    common = _global_options()
    sub = top.add_subparsers(dest="command", metavar="command", required=True)

    chat = sub.add_parser("chat", parents=[common],
                          help="chat in this terminal; replies stream as they arrive")
    chat.add_argument("--session", default="main", help="session key (default: main)")

    agent = sub.add_parser("agent", parents=[common],
                           help="one turn: send a message, print the reply, exit")
    agent.add_argument("--session", default="main", help="session key (default: main)")
    agent.add_argument("--message", "-m", required=True,
                       help="the message ('-' reads it from stdin, as UTF-8)")
    agent.add_argument("--id", dest="message_id", help="a message id; a repeat is not re-sent")
    agent.add_argument("--json", action="store_true", help="print the outcome as JSON")

    stop = sub.add_parser("stop", parents=[common],
                          help="stop a session's run, from any process")
    stop.add_argument("--session", default="main", help="session key (default: main)")
    stop.add_argument("--json", action="store_true", help="print the outcome as JSON")

    sessions = sub.add_parser("sessions", parents=[common], help="list or show sessions")
    which = sessions.add_subparsers(dest="action", metavar="action", required=True)
    listing = which.add_parser("list", parents=[common], help="one row per session")
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    listing.add_argument("--limit", type=count_up_to(SESSIONS_LISTED), default=100,
                         help=f"at most this many (default 100, at most {SESSIONS_LISTED})")
    show = which.add_parser("show", parents=[common],
                            help="a session with its runs and messages")
    show.add_argument("key", help="the session's key (as in: clawgate sessions list)")
    show.add_argument("--json", action="store_true", help=JSON_HELP)
    show.add_argument("--limit", type=count_up_to(SESSION_ROWS), default=50,
                      help=f"latest runs/messages (default 50, at most {SESSION_ROWS})")

    gateway = sub.add_parser("gateway", parents=[common],
                             help="run the gateway (web chat, WebSocket, HTTP API)")
    gateway.add_argument("action", nargs="?", choices=["run", "token"], default="run",
                         help="run (the default), or print the gateway token")
    gateway.add_argument("--host", help=f"listen here (default: {GATEWAY_HOST}, or [gateway] "
                         "host in config.toml)")
    gateway.add_argument("--port", type=port, help="listen on this port, 0 for any free one "
                         f"(default: {GATEWAY_PORT}, or [gateway] port in config.toml)")

    models = sub.add_parser("models", parents=[common],
                            help="list the configured models, or test one")
    what = models.add_subparsers(dest="action", metavar="action", required=True)
    what.add_parser("list", parents=[common],
                    help="providers, auth profiles, default, fallbacks, aliases"
                    ).add_argument("--json", action="store_true", help=JSON_HELP)
    probe = what.add_parser("test", parents=[common],
                            help="one tiny request through each auth profile")
    probe.add_argument("ref", nargs="?", help="provider/model or alias (default: the default)")
    probe.add_argument("--json", action="store_true", help=JSON_HELP)
    probe.add_argument("--timeout", type=seconds, default=PROBE_TIMEOUT_S, metavar="SECONDS",
                       help="give up on a profile whose answer has not ended by then "
                       f"(default {PROBE_TIMEOUT_S:g})")

    doctor = sub.add_parser("doctor", parents=[common],
                            help="check every promise in the store")
    doctor.add_argument("--json", action="store_true", help=JSON_HELP)
    doctor.add_argument("--fix", action="store_true", help="repair what can be repaired")
    return top


def _global_options() -> argparse.ArgumentParser:
    """--home and -v, taken after a command too (``clawgate gateway --home X``). They are
    kept apart from the ones before it (a command's parser fills a namespace of its own,
    which would overwrite them) and joined in ``main``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", dest="late_home", metavar="HOME", default=argparse.SUPPRESS,
                        help=HOME_HELP)
    common.add_argument("-v", "--verbose", dest="late_verbose", action="count",
                        default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return common


def _join_global_options(args: argparse.Namespace) -> argparse.Namespace:
    """The --home and -v given after the command count as if given before it (the later
    --home wins; every -v counts)."""
    late = vars(args)
    args.home = late.pop("late_home", args.home)
    args.verbose += late.pop("late_verbose", 0)
    return args


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number from 0 to 65535 (0: any free port), got {text!r}")
    return value


def seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def count_up_to(high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``high`` (the gateway's bound too, so a
    command means the same with or without a gateway)."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not 1 <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from 1 to {high}, got {text!r}")
        return value

    return count


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # now, not at exit: a reader gone is then seen here
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:  # Ctrl-C as the command starts (its modules load): quietly
        return INTERRUPTED
    return code


def _run(argv: Sequence[str] | None) -> int:
    args = _join_global_options(parser().parse_args(argv))
    module = importlib.import_module(COMMANDS[args.command])
    from clawgate.cli.common import run_command

    return run_command(module, args)


def _reader_gone() -> int:
    """stdout's reader closed it early: end quietly (no traceback), with READER_GONE. What
    is still buffered goes to /dev/null, so the flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return READER_GONE


if __name__ == "__main__":
    sys.exit(main())
