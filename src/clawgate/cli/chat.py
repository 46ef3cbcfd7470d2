"""``clawgate chat``: the terminal channel, through the running gateway or in-process.

A chat opening a session shows first the replies that ended since a chat last left it
(``chat_seen``); a chat whose gateway goes away says which of its messages are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clawgate.channels.terminal import (
    CHANNEL,
    ChatEvent,
    Closing,
    Delta,
    Dropped,
    LocalChat,
    RunEnded,
    Sent,
    TerminalChat,
)
from clawgate.cli import chat_seen
from clawgate.cli.common import open_app
from clawgate.cli.remote import check_line, connect_gateway
from clawgate.config import Settings
from clawgate.domain import REPLY_SEPARATOR, Fate, check_key
from clawgate.errors import ClawgateError, Disconnected, InvalidInput
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.limits import SESSION_ROWS
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.scope import ServeKeys
from clawgate.store.protocol import Store

ACTIVE = ("queued", "running")
HISTORY_FILE = "chat_history"
RUNS_LOOKED_AT = 50  # a chat opening looks this far back for replies that ended unseen
EARLIER_SHOWN = 5  # ... and shows the latest of them
#: Waiting for a message's answer through the gateway reads the session again as a run ends
#: or a message is dropped, and at least this often whatever happens.
REREAD_AFTER_S = 2.0
READ_FIRST = 10  # ... first in the session's latest few rows (each run's row costs a read)
Json = dict[str, Any]


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    since = chat_seen.left_at(settings.home, key)
    client = await connect_gateway(settings)
    if client is not None:
        async with client:
            return await _through(client, key, since, settings)
    seen = Seen(settings, key)
    async with open_app(settings) as app:
        runtime = Runtime(app.store, app.providers, settings.runtime,
                          scope=ServeKeys(app.store, frozenset({key})), name="clawgate chat")
        await runtime.start()
        try:
            chat = LocalChat(runtime, key)  # (listening before anything can run)
            if since is not None:  # (this process's runs are the chat's to show)
                _say_earlier(await _ended_since(app.store, key, since, runtime.owner.id))
            return await TerminalChat(chat, key, history=_history(settings),
                                      on_end_shown=seen.now).run()
        finally:  # (the chat waited for the answers it wanted: a reply still being written
            # as it leaves, at Ctrl-C twice or SIGTERM, ends interrupted now, kept as it is;
            # the user watched it: it is not shown as earlier by the next chat)
            await runtime.close(grace=0)
            await seen.leaving()


async def _through(client: GatewayClient, key: str, since: datetime | None,
                   settings: Settings) -> int:
    """The chat through the gateway; if the gateway goes away, its ending line says which
    of the chat's messages are kept."""
    await client.request("events.subscribe", sessions=[key])
    remote = RemoteChat(client, key)
    if since is not None:  # (what ends from now on comes as events)
        _say_earlier(await remote.ended_between(since, datetime.now(UTC)))
    seen = Seen(settings, key)
    try:
        return await TerminalChat(remote, key, history=_history(settings),
                                  on_end_shown=seen.now).run()
    except Disconnected as exc:
        raise Disconnected(f"{exc}{await _kept(settings, key, remote.sent)}") from None
    finally:  # however it ends: what ends from now on is shown by the next chat
        await seen.leaving()


class Seen:
    """Keeps ``chat_seen`` current while a chat is open: as each reply's end is shown (so a
    chat opened meanwhile does not show it again as earlier), and when the chat leaves. The
    file is written on a thread, one write at a time; ends shown during a write are
    recorded by one more write after it."""

    def __init__(self, settings: Settings, key: str) -> None:
        self._home = settings.home
        self._key = key
        self._writing: asyncio.Future[None] | None = None
        self._again = False

    def now(self) -> None:
        """A reply's end has just been shown."""
        if self._writing is not None and not self._writing.done():
            self._again = True  # (recorded once this write is done)
            return
        self._again = False
        self._writing = asyncio.ensure_future(asyncio.to_thread(
            chat_seen.record_leaving, self._home, self._key, datetime.now(UTC)))
        self._writing.add_done_callback(self._written)

    def _written(self, _: asyncio.Future[None]) -> None:
        if self._again:
            self.now()

    async def leaving(self) -> None:
        """The chat leaves: what ends from now on is shown by the next chat."""
        self._again = False
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        chat_seen.record_leaving(self._home, self._key, datetime.now(UTC))


async def _kept(settings: Settings, key: str, sent: set[str]) -> str:
    """What the ending line of a chat whose gateway went away adds: how many of its
    messages still wait their turn, kept in the store (read directly: the gateway is gone)."""
    if not sent:
        return ""
    try:
        async with open_app(settings) as app:
            session = await app.store.get_session(key)
            inbound = await app.store.list_inbound(session.id, SESSION_ROWS) if session else []
    except ClawgateError:  # (the ending line just does not say)
        return ""
    kept = sum(1 for m in inbound if m.id in sent and m.fate is Fate.PENDING)
    if not kept:
        return ""
    which = "1 message is" if kept == 1 else f"{kept} messages are"
    return (f"; {which} kept and will be answered when the gateway is back; run clawgate "
            f"chat again to see the {'reply' if kept == 1 else 'replies'}")


@dataclass(frozen=True, slots=True)
class Ended:
    """A run that ended, as a chat opening its session shows it."""

    ended_at: datetime
    status: str
    error: str | None
    reply: str


async def _ended_since(store: Store, key: str, since: datetime, owner_id: str) -> list[Ended]:
    """The session's runs that ended after ``since``, but this process's, oldest first."""
    session = await store.get_session(key)
    runs = await store.list_runs(session.id, RUNS_LOOKED_AT) if session else []
    return [Ended(run.ended_at, str(run.status), run.error, await store.run_reply(run.id))
            for run in runs
            if run.ended_at is not None and run.ended_at > since and run.owner_id != owner_id]


def _say_earlier(ended: list[Ended]) -> None:
    """Show the replies that ended while no chat was on the session (the latest few)."""
    shown = ended[-EARLIER_SHOWN:]
    if len(ended) > len(shown):
        left = len(ended) - len(shown)
        print(f"({left} earlier {'reply' if left == 1 else 'replies'} not shown)")
    for run in shown:
        when = run.ended_at.astimezone()
        today = when.date() == datetime.now(UTC).astimezone().date()
        text = run.reply
        if run.status != "done":
            text += f"{' ' if text else ''}[{run.status}: {run.error}]"
        print(f"earlier, {when.strftime('%H:%M' if today else '%Y-%m-%d %H:%M')}: {text}")
    sys.stdout.flush()


def _history(settings: Settings) -> Path:
    """What was typed in chats, for Up to recall (private: mode 0600)."""
    return settings.home / HISTORY_FILE


class RemoteChat:
    """A chat whose session lives in the running gateway."""

    def __init__(self, client: GatewayClient, key: str) -> None:
        self._client = client
        self._key = key
        self.sent: set[str] = set()  # the ids of the messages sent
        self._decided = asyncio.Event()  # set as a run ends or a message is dropped

    async def _session(self, runs: int) -> dict[str, Any] | None:
        """The session as ``sessions.get`` gives it, with its latest ``runs`` runs (None: the
        gateway does not know it yet)."""
        try:
            row: dict[str, Any] = await self._client.request(
                "sessions.get", session=self._key, limit=runs)
        except GatewayError as exc:
            if exc.code != "unknown_session":
                raise
            return None
        return row

    async def model(self) -> str:
        if (row := await self._session(1)) is None:
            return str((await self._client.request("models.list"))["default"])
        return f"{row['modelProvider']}/{row['model']}"

    async def handle(self, text: str) -> str | Sent:
        message_key = f"chat-{uuid.uuid4()}"
        check_line(text, CHANNEL, message_key)  # refused as in-process, and not sent
        try:
            ack = await self._client.request("chat.send", session=self._key, text=text,
                                             channel=CHANNEL, idempotencyKey=message_key)
        except GatewayError as exc:
            if exc.code in ("invalid_params", "unknown_session"):
                raise InvalidInput(str(exc)) from None
            raise
        if ack["command"]:
            return str(ack["reply"])
        mode = ack.get("queueMode", "unknown")  # (a gateway older than this CLI sends none)
        waits = ack["fate"] == "pending" and ack["queuedBehind"] is not None  # (not dropped)
        self.sent.add(ack["messageId"])
        return Sent(ack["messageId"], mode if waits else None)

    async def ended_between(self, since: datetime, until: datetime) -> list[Ended]:
        """The session's runs that ended after ``since`` and by ``until``, oldest first."""
        if (row := await self._session(RUNS_LOOKED_AT)) is None:
            return []
        runs = [r for r in row["runs"]
                if r["endedAt"] and since < datetime.fromisoformat(r["endedAt"]) <= until]
        if not runs:
            return []
        history = await self._client.request("chat.history", session=self._key,
                                              limit=SESSION_ROWS)
        return [Ended(datetime.fromisoformat(r["endedAt"]), r["status"], r["error"],
                      REPLY_SEPARATOR.join(e["text"] for e in history["entries"]
                                           if e["runId"] == r["id"] and e["role"] == "assistant"))
                for r in runs]

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The session's events, until the chat closes; Disconnected if the gateway goes."""
        try:
            async for frame in self._client.events():
                kind, payload = frame["event"], frame["payload"]
                if kind == "gateway.shutdown":  # the connection's event: it names no session
                    yield Closing(float(payload["graceSeconds"]))
                elif payload.get("session") == self._key and (
                        event := _chat_event(kind, payload)) is not None:
                    if isinstance(event, RunEnded | Dropped):
                        self._decided.set()  # (what ``wait_for`` waits on)
                    yield event
        finally:
            self._decided.set()  # (no more events: a waiter reads once more, and finds out)
        if self._client.lost is not None:
            raise Disconnected(self._client.lost)

    async def running(self) -> bool:
        row = await self._session(1)
        return row is not None and any(run["status"] in ACTIVE for run in row["runs"])

    async def stop(self) -> str | None:
        result = await self._client.request("chat.abort", session=self._key)
        # A run's end, and a stopped /compact's answer, say what was stopped.
        said = result["runId"] is not None or result.get("compactionStopped", False)
        return None if said and not result["dropped"] else str(result["text"])

    async def wait_for(self, message_id: str) -> str | None:
        """Until the message has its fate and its run (if any) has ended (GatewayClosed, a
        Disconnected, if the gateway goes first); the run that answered it."""
        while True:  # (one read, then one more each time a run ends or a message is dropped)
            self._decided.clear()  # (before the read: what ends during it is read again)
            message, run = await self._message_and_run(message_id)
            if message is None or message["fate"] == "dropped":
                return None
            if run is not None and run["status"] not in ACTIVE:  # (a run not listed yet:
                return str(run["id"])                             # the reads are separate)
            with contextlib.suppress(TimeoutError):  # (a fallback: read again now and then)
                await asyncio.wait_for(self._decided.wait(), REREAD_AFTER_S)

    async def _message_and_run(self, message_id: str) -> tuple[Json | None, Json | None]:
        """The message's row and its run's (None: not listed), read from the session's
        latest few rows (the message was sent lately), or many if it is not among them."""
        for limit in READ_FIRST, SESSION_ROWS:
            row = await self._client.request("sessions.get", session=self._key, limit=limit)
            message = next((m for m in row["inbound"] if m["id"] == message_id), None)
            run = next((r for r in row["runs"] if message and r["id"] == message["runId"]),
                       None)
            if (message is not None or len(row["inbound"]) < limit) and (
                    run is not None or not (message and message["runId"])
                    or len(row["runs"]) < limit):
                break  # (nothing more to see further back)
        return message, run

    def close(self) -> None:
        self._client.end_events()


def _chat_event(kind: str, payload: dict[str, Any]) -> ChatEvent | None:
    """What a chat shows of one of its session's events (None: nothing)."""
    if kind == "run.delta":
        return Delta(payload["runId"], payload["text"])
    if kind.startswith("run.") and payload.get("status") not in (None, *ACTIVE):
        return RunEnded(payload["runId"], payload["status"], payload.get("error"))
    if kind == "message.dropped":
        return Dropped.stored(payload)
    return None
