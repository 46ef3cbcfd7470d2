"""``clawgate chat``: the terminal channel, through the running gateway or in-process."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator
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
from clawgate.cli.common import open_app
from clawgate.cli.remote import check_line, connect_gateway
from clawgate.config import Settings
from clawgate.domain import check_key
from clawgate.errors import Disconnected, InvalidInput
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.scope import ServeKeys

ACTIVE = ("queued", "running")
HISTORY_FILE = "chat_history"


async def main(args: argparse.Namespace, settings: Settings) -> int:
    key = check_key(args.session)
    client = await connect_gateway(settings)
    if client is not None:
        async with client:
            await client.request("events.subscribe", sessions=[key])
            return await TerminalChat(RemoteChat(client, key), key,
                                        history=_history(settings)).run()
    async with open_app(settings) as app:
        runtime = Runtime(app.store, app.providers, settings.runtime,
                          scope=ServeKeys(app.store, frozenset({key})), name="clawgate chat")
        await runtime.start()
        try:
            return await TerminalChat(LocalChat(runtime, key), key,
                                    history=_history(settings)).run()
        finally:  # (the chat waited for the answers it wanted: a reply still being written
            # as it leaves, at Ctrl-C twice or SIGTERM, ends interrupted now, kept as it is)
            await runtime.close(grace=0)


def _history(settings: Settings) -> Path:
    """What was typed in chats, for Up to recall (private: mode 0600)."""
    return settings.home / HISTORY_FILE


class RemoteChat:
    """A chat whose session lives in the running gateway."""

    def __init__(self, client: GatewayClient, key: str) -> None:
        self._client = client
        self._key = key

    async def model(self) -> str:
        try:
            row = await self._client.request("sessions.get", session=self._key, limit=1)
        except GatewayError as exc:
            if exc.code != "unknown_session":
                raise
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
        return Sent(ack["messageId"], mode if waits else None)

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The session's events, until the chat closes; Disconnected if the gateway goes."""
        async for frame in self._client.events():
            kind, payload = frame["event"], frame["payload"]
            if kind == "gateway.shutdown":  # the connection's event: it names no session
                yield Closing(float(payload["graceSeconds"]))
            elif payload.get("session") == self._key and (
                    event := _chat_event(kind, payload)) is not None:
                yield event
        if self._client.lost is not None:
            raise Disconnected(self._client.lost)

    async def stop(self) -> str | None:
        result = await self._client.request("chat.abort", session=self._key)
        # A run's end, and a stopped /compact's answer, say what was stopped.
        said = result["runId"] is not None or result.get("compactionStopped", False)
        return None if said and not result["dropped"] else str(result["text"])

    async def wait_for(self, message_id: str) -> str | None:
        """Until the message has its fate and its run (if any) has ended (GatewayClosed, a
        Disconnected, if the gateway goes first); the run that answered it."""
        while True:
            row = await self._client.request("sessions.get", session=self._key, limit=200)
            message = next((m for m in row["inbound"] if m["id"] == message_id), None)
            run = next((r for r in row["runs"] if message and r["id"] == message["runId"]),
                       None)
            if message is None or message["fate"] == "dropped":
                return None
            if run is not None and run["status"] not in ACTIVE:  # (a run not listed yet:
                return str(run["id"])                             # the reads are separate)
            await asyncio.sleep(0.2)

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
