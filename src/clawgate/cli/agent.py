"""``clawgate agent``: send one message, stream the reply, exit with the run's outcome.

It uses the running gateway when there is one, and works in-process otherwise; either way a
chat command (``/status``, ``stop``, ...) is carried out and its answer printed.
Exit codes: 0 answered; 1 the run failed (the error is printed); 2 bad arguments or config;
3 stopped; 4 timed out; 5 interrupted; 6 the message was dropped unanswered; 7 the gateway
went away before the outcome was known (a message still waiting is kept, and the same command
with the same ``--id`` shows its outcome without sending it again; one being answered had its
reply cut off: its run ends interrupted). Under ``--json`` the outcome has the same keys in
every case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from clawgate.cli.common import OK, USAGE, open_app
from clawgate.cli.remote import check_line, connect_gateway
from clawgate.config import Settings
from clawgate.domain import (
    REPLY_SEPARATOR,
    DropReason,
    InboundMessage,
    Run,
    RunStatus,
    check_key,
)
from clawgate.errors import ClawgateError, InvalidInput
from clawgate.gateway.client import GatewayClient, GatewayClosed
from clawgate.runtime.bus import MessageDecided, ReplyDelta, Subscription
from clawgate.runtime.runtime import CommandReply, Runtime
from clawgate.runtime.scope import ServeOwnMessages
from clawgate.views import run_row

EXIT_BY_STATUS = {
    RunStatus.DONE: 0,
    RunStatus.FAILED: 1,
    RunStatus.KILLED: 3,
    RunStatus.TIMEOUT: 4,
    RunStatus.INTERRUPTED: 5,
}
DROPPED = 6
GATEWAY_GONE = 7
CHANNEL = "cli"  # in-process or through a gateway: so that --id means the same either way
ACTIVE = ("queued", "running")  # a run's statuses before it ends


@dataclass(frozen=True, slots=True)
class Result:
    """What became of the message, however it was sent."""

    message_id: str | None  # None: the gateway went away before it said
    fate: str  # or "unknown" (why: ``reason``)
    reason: str | None  # why it was dropped (or its fate is unknown), in words
    run: dict[str, Any] | None  # the run row (views.run_row), if a run took it
    reply: str


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    text = await _from_stdin() if args.message == "-" else args.message
    check_line(text, CHANNEL, args.message_id)  # nothing is sent that would be refused
    client = await connect_gateway(settings)
    if client is not None:
        async with client:
            return await _via_gateway(client, settings, key, text, args)
    return await _in_process(settings, key, text, args)


async def _from_stdin() -> str:
    """The message piped in: UTF-8 (a byte order mark is left out), without the newline
    that ends the last line (inner newlines and leading spaces are kept)."""
    data: bytes = await asyncio.to_thread(sys.stdin.buffer.read)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the message on stdin is not UTF-8: byte 0x{data[exc.start]:02x} "
                           f"at offset {exc.start} (convert it first, e.g. with iconv -t "
                           "UTF-8)") from None
    return text.rstrip("\r\n")


# --- in-process -----------------------------------------------------------------------


async def _in_process(settings: Settings, key: str, text: str, args: argparse.Namespace
                      ) -> int:
    async with open_app(settings) as app:
        runtime = Runtime(app.store, app.providers, settings.runtime,
                          scope=ServeOwnMessages(app.store), name="clawgate agent")
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
    try:  # a command (/status, stop, ...) is carried out, as through the gateway
        accepted = await runtime.handle(key, text, channel=CHANNEL,
                                        channel_message_id=args.message_id)
    except BaseException:
        events.close()
        raise
    if isinstance(accepted, CommandReply):
        events.close()
        return _command_done(key, text, accepted.text, args)
    if accepted.duplicate and not args.json:
        print(f"(message id {args.message_id} was sent before; showing its outcome)",
              file=sys.stderr)
    printed = Printed()
    printer = asyncio.create_task(_stream(events, accepted.message.id, printed, args.json))
    _on_signals(lambda: runtime.stop(key))
    try:
        outcome = await runtime.wait_for(accepted.message.id)
    finally:
        events.close()
        await printer
    return _report(_stored_result(outcome.message, outcome.run, outcome.reply), printed.upto,
                   args, args.message_id)


@dataclass
class Printed:
    """How much of the reply has been printed as it streamed: its first ``upto`` characters.

    Once a piece is missed (this process's events fell behind, or the gateway's feed said it
    skipped some), nothing more is streamed: the rest is printed from the stored reply once
    the run has ended.
    """

    upto: int = 0
    missed: bool = False

    def take(self, offset: int, text: str) -> str:
        """What to print of a piece of the reply that starts at ``offset``."""
        if self.missed or offset > self.upto:
            self.missed = True
            return ""
        piece = text[self.upto - offset:]  # (a piece printed before is not printed again)
        self.upto += len(piece)
        return piece


async def _stream(events: Subscription, message_id: str, printed: Printed, quiet: bool
                  ) -> None:
    """Print the reply as it streams, into ``printed``; a subscription that falls behind
    ends early (``_report`` prints the rest)."""
    run_id: str | None = None
    async for event in events:
        if isinstance(event, MessageDecided) and event.message.id == message_id:
            run_id = event.message.run_id
        elif isinstance(event, ReplyDelta) and event.run_id == run_id and not quiet:
            _write(printed.take(event.offset, event.text))


def _stored_result(message: InboundMessage, run: Run | None, reply: str) -> Result:
    return Result(message.id, str(message.fate),
                  message.reason.describe if message.reason else None,
                  run_row(run) if run else None, reply)


# --- through the gateway ----------------------------------------------------------------


async def _via_gateway(client: GatewayClient, settings: Settings, key: str, text: str,
                       args: argparse.Namespace) -> int:
    await client.request("events.subscribe", sessions=[key])
    message_key = args.message_id or f"cli-{uuid.uuid4()}"
    try:
        ack = await client.request("chat.send", session=key, text=text, channel=CHANNEL,
                                   idempotencyKey=message_key)
    except GatewayClosed:  # (a chat command is not kept, but is safe to repeat as it is)
        unknown = Result(None, "unknown", "the gateway did not acknowledge it", None, "")
        return _gateway_gone(client, unknown, message_key, args)
    if ack["command"]:
        return _command_done(key, text, ack["reply"], args)
    if ack["duplicate"] and not args.json:
        print(f"(message id {args.message_id} was sent before; showing its outcome)",
              file=sys.stderr)
    _on_signals(lambda: client.request("chat.abort", session=key))
    printed = Printed()
    try:
        await _follow(client, key, ack["messageId"], printed, quiet=args.json)
        result = await _gateway_result(client, key, ack["messageId"])
    except GatewayClosed:
        last = await _last_stored(settings, ack["messageId"])
        return _gateway_gone(client, last, message_key, args)
    except asyncio.CancelledError:
        print("clawgate: leaving; the gateway carries on with the run (to see its outcome: "
              f"{_again(message_key, args)})", file=sys.stderr)
        return EXIT_BY_STATUS[RunStatus.INTERRUPTED]
    return _report(result, printed.upto, args, message_key)


def _gateway_gone(client: GatewayClient, last: Result, message_key: str,
                  args: argparse.Namespace) -> int:
    """The gateway went away before the outcome was known: what became of the message as far
    as is known (under --json in the outcome's shape, ``error`` saying what happened), and
    what to do next."""
    said = _gone_words(client.lost or "the connection to the gateway closed", last,
                       message_key, args)
    if args.json:
        print(json.dumps({**_outcome_json(last, args.session, message_key), "error": said}))
    print(f"clawgate: {said}", file=sys.stderr)
    return GATEWAY_GONE


def _gone_words(why: str, last: Result, message_key: str, args: argparse.Namespace) -> str:
    """What became of the message when the gateway went away, and what to do next: one that
    waited is kept; one whose reply was being written is cut off (its run is interrupted),
    and asking again takes a new message."""
    again = f"To see its outcome without sending it twice: {_again(message_key, args)}"
    message, run = last.message_id, last.run
    if message is None:
        return f"{why} before it acknowledged the message; it may not have been received. {again}"
    if last.fate == "pending":
        return (f"{why} while message {message} was waiting its turn; it is kept, and answered "
                f"when the gateway is back. {again}")
    if run is not None and run["status"] in ACTIVE:
        taken = f" with another --id ({args.message_id} is taken)" if args.message_id else ""
        return (f"{why} while message {message} was being answered (run {run['id']}); its "
                "reply is cut off, and the run ends interrupted. `clawgate sessions show "
                f"{args.session}` shows what became of it; to have it answered, send it "
                f"again{taken}")
    if last.fate == "unknown":
        return f"{why} before message {message} had its outcome ({last.reason}). {again}"
    return f"{why} before the outcome of message {message} arrived. {again}"


async def _last_stored(settings: Settings, message_id: str) -> Result:
    """What became of the message, as the gateway's database says (read here: the gateway
    is gone); fate ``unknown`` if it cannot be read now."""
    try:
        async with open_app(settings) as app:
            message = await app.store.get_message(message_id)
            run = (await app.store.get_run(message.run_id)
                   if message is not None and message.run_id is not None else None)
    except ClawgateError as exc:
        return Result(message_id, "unknown", f"its database cannot be read now: {exc}", None,
                      "")
    if message is None:
        return Result(message_id, "unknown", "it is not in the database", None, "")
    return _stored_result(message, run, "")


def _again(message_key: str, args: argparse.Namespace) -> str:
    """How to ask again for the same message's outcome."""
    if args.message_id is not None:
        return "run the same command again (its --id keeps the message from being sent twice)"
    return f"run the same command again with --id {message_key}"


async def _follow(client: GatewayClient, key: str, message_id: str, printed: Printed,
                  quiet: bool) -> None:
    """Print the reply as it streams, into ``printed``, until the message's run ends."""
    if await _settled(client, key, message_id):
        return
    run_id = None
    while True:
        event = await client.next_event(within=3600)
        payload, kind = event["payload"], event["event"]
        if kind == "feed.lagged":  # text was skipped (the rest comes from the stored reply),
            printed.missed = True  # and events are, until it asks again from where it was
            await client.request("events.subscribe", sessions=[key],
                                 after=payload["lastSeq"])
        elif payload.get("messageId") == message_id and kind.startswith("message."):
            if kind == "message.dropped":
                return
            run_id = payload.get("runId")
        elif payload.get("runId") == run_id and run_id is not None:
            if kind == "run.delta" and not quiet:
                _write(printed.take(payload.get("offset", printed.upto), payload["text"]))
            elif kind.startswith("run.") and payload.get("status") not in (
                    None, *ACTIVE):
                return


async def _settled(client: GatewayClient, key: str, message_id: str) -> bool:
    """Whether the message already has its final outcome (a repeat of an old message).

    A message a run took is settled only once that run is seen ended (the session's runs
    and messages are separate reads, so the run may not be listed yet).
    """
    result = await _gateway_result(client, key, message_id)
    if result.fate == "pending":
        return False
    if result.fate == "dropped":
        return True
    return result.run is not None and result.run["status"] not in ACTIVE


async def _gateway_result(client: GatewayClient, key: str, message_id: str) -> Result:
    session = await client.request("sessions.get", session=key, limit=200)
    message = next((m for m in session["inbound"] if m["id"] == message_id), None)
    if message is None:
        return Result(message_id, "unknown", "the message is too old to show", None, "")
    run = next((r for r in session["runs"] if r["id"] == message["runId"]), None)
    reply = ""
    if run is not None:
        history = await client.request("chat.history", session=key, limit=1000)
        reply = REPLY_SEPARATOR.join(e["text"] for e in history["entries"]
                                     if e["runId"] == run["id"] and e["role"] == "assistant")
    reason = DropReason(message["reason"]).describe if message["reason"] else None
    return Result(message_id, message["fate"], reason, run, reply)


# --- both ------------------------------------------------------------------------------


def _on_signals(stop: Callable[[], Awaitable[object]]) -> None:
    """Ctrl-C stops the run (and so ends the command); a second one, or SIGTERM, leaves."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping: set[asyncio.Future[object]] = set()

    def interrupt() -> None:
        if stopping and task is not None:
            task.cancel()
            return
        print("\nstopping...", file=sys.stderr)
        stopping.add(asyncio.ensure_future(stop()))

    def terminate() -> None:
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError):  # not on every platform
        loop.add_signal_handler(signal.SIGINT, interrupt)
        loop.add_signal_handler(signal.SIGTERM, terminate)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _command_done(key: str, line: str, reply: str, args: argparse.Namespace) -> int:
    """A chat command was carried out: its answer (under --json, as an object)."""
    print(json.dumps({"session": key, "command": line.strip(), "reply": reply})
          if args.json else reply)
    return OK


def _outcome_json(result: Result, key: str, message_key: str | None) -> dict[str, object]:
    """The outcome under --json: the same keys whatever became of the message."""
    run = result.run
    return {
        "session": key, "messageId": result.message_id, "id": message_key,
        "fate": result.fate, "reason": result.reason, "runId": run["id"] if run else None,
        "status": run["status"] if run else None, "reply": result.reply,
        "error": run["error"] if run else None,
        "model": f"{run['modelProvider']}/{run['model']}" if run and run["model"] else None,
        "inputTokens": run["inputTokens"] if run else 0,
        "outputTokens": run["outputTokens"] if run else 0,
        "runtimeMs": run["runtimeMs"] if run else None,
    }


def _report(result: Result, printed: int, args: argparse.Namespace,
            message_key: str | None) -> int:
    """Print what is left of the reply (its first ``printed`` characters streamed already)
    and how the run ended; the exit code."""
    run = result.run
    if args.json:
        print(json.dumps(_outcome_json(result, args.session, message_key)))
    else:
        _write(result.reply[printed:])
        if printed or result.reply:
            _write("\n")
    if run is None:
        print(f"clawgate: the message was not answered: {result.reason or result.fate}",
              file=sys.stderr)
        return DROPPED
    status = RunStatus(run["status"])
    if status is not RunStatus.DONE and not args.json:
        print(f"clawgate: run {run['id']} ended {status}: {run['error']}", file=sys.stderr)
    return EXIT_BY_STATUS.get(status, USAGE)
