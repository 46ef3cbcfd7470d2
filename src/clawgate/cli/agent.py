"""``clawgate agent``: send one message, stream the reply, exit with the run's outcome.

Exit codes: 0 answered; 1 the run failed (the error is printed); 2 bad arguments or config;
3 stopped; 4 timed out; 5 interrupted; 6 the message was dropped unanswered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from clawgate.cli.common import USAGE, open_app
from clawgate.config import Settings
from clawgate.domain import Fate, RunStatus, check_key
from clawgate.runtime.bus import MessageDecided, ReplyDelta, Subscription
from clawgate.runtime.runtime import MessageOutcome, Runtime
from clawgate.runtime.scope import ServeOwnMessages

EXIT_BY_STATUS = {
    RunStatus.DONE: 0,
    RunStatus.FAILED: 1,
    RunStatus.KILLED: 3,
    RunStatus.TIMEOUT: 4,
    RunStatus.INTERRUPTED: 5,
}
DROPPED = 6


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    text = sys.stdin.read() if args.message == "-" else args.message
    async with open_app(settings) as app:
        runtime = Runtime(app.store, app.providers, settings.runtime,
                          scope=ServeOwnMessages(app.store))
        await runtime.start()
        try:
            return await _turn(runtime, key, text, args)
        except asyncio.CancelledError:  # SIGTERM or a second Ctrl-C
            print("clawgate: leaving; the run is recorded as interrupted", file=sys.stderr)
            return EXIT_BY_STATUS[RunStatus.INTERRUPTED]
        finally:
            await runtime.close(grace=0)


async def _turn(runtime: Runtime, key: str, text: str, args: argparse.Namespace) -> int:
    events = runtime.subscribe(key)
    accepted = await runtime.send(key, text, channel="cli", channel_message_id=args.message_id)
    if accepted.duplicate and not args.json:
        print(f"(message id {args.message_id} was sent before; showing its outcome)",
              file=sys.stderr)
    printer = asyncio.create_task(_stream(events, accepted.message.id, quiet=args.json))
    _on_signals(runtime, key)
    try:
        outcome = await runtime.wait_for(accepted.message.id)
    finally:
        events.close()
        streamed = await printer
    return _report(outcome, streamed, args)


async def _stream(events: Subscription, message_id: str, quiet: bool) -> bool:
    """Print the reply as it streams; True if anything was printed."""
    run_id: str | None = None
    printed = False
    async for event in events:
        if isinstance(event, MessageDecided) and event.message.id == message_id:
            run_id = event.message.run_id
        elif isinstance(event, ReplyDelta) and event.run_id == run_id and not quiet:
            sys.stdout.write(event.text)
            sys.stdout.flush()
            printed = True
    return printed


def _on_signals(runtime: Runtime, key: str) -> None:
    """Ctrl-C stops the run (and so ends the command); SIGTERM exits at once."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping: set[asyncio.Task[object]] = set()

    def interrupt() -> None:
        if stopping and task is not None:
            task.cancel()  # a second Ctrl-C: leave now, the run ends interrupted
            return
        print("\nstopping...", file=sys.stderr)
        stopping.add(asyncio.ensure_future(runtime.stop(key)))

    def terminate() -> None:
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError):  # not on every platform
        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, terminate)


def _report(outcome: MessageOutcome, streamed: bool, args: argparse.Namespace) -> int:
    message, run = outcome.message, outcome.run
    if args.json:
        print(json.dumps({
            "session": args.session,
            "messageId": message.id,
            "fate": str(message.fate),
            "reason": None if message.reason is None else str(message.reason),
            "runId": run.id if run else None,
            "status": str(run.status) if run else None,
            "reply": outcome.reply,
            "error": run.error if run else None,
            "model": str(run.model) if run and run.model else None,
            "inputTokens": run.usage.input_tokens if run else 0,
            "outputTokens": run.usage.output_tokens if run else 0,
            "runtimeMs": run.runtime_ms if run else None,
        }))
    else:
        if not streamed and outcome.reply:
            sys.stdout.write(outcome.reply)
        if streamed or outcome.reply:
            sys.stdout.write("\n")
        sys.stdout.flush()
    if message.fate is Fate.DROPPED or run is None:
        reason = message.reason.describe if message.reason else "dropped"
        print(f"clawgate: the message was not answered: {reason}", file=sys.stderr)
        return DROPPED
    if run.status is not RunStatus.DONE and not args.json:
        print(f"clawgate: run {run.id} ended {run.status}: {run.error}", file=sys.stderr)
    return EXIT_BY_STATUS.get(run.status, USAGE)
