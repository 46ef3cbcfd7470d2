"""What the gateway can be asked, independent of the transport (WebSocket or HTTP).

Each method takes checked parameters and returns a JSON-ready payload; failures are the
typed exceptions of ``clawgate.errors``, turned into protocol errors by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clawgate import __version__
from clawgate.config import Settings
from clawgate.domain import QueuePatch
from clawgate.errors import InvalidInput, UnknownSession
from clawgate.gateway import protocol as p
from clawgate.gateway.feed import EventFeed, Listener
from clawgate.runtime.runtime import CommandReply, Runtime
from clawgate.store.protocol import StopResult
from clawgate.views import (
    Json,
    inbound_row,
    model_listing,
    outbound_row,
    run_row,
    session_row,
    transcript_row,
)

#: A method as the transport calls it: unchecked parameters in, a payload out.
Handler = Callable[[dict[str, Any], Listener], Awaitable[Json]]


#: The channels clawgate's own clients name: the web chat, the OpenAI-compatible API, the
#: CLI's ``agent`` and ``chat``, and ``chat.send``'s default.
KNOWN_CHANNELS = frozenset({"webchat", "http", "cli", "terminal", "ws"})
#: How many other channel names get a series of their own; messages from any further name
#: are counted as ``other``, so a client inventing names cannot grow /metrics without bound.
OTHER_CHANNELS = 16
OTHER = "other"


@dataclass
class Counters:
    """What the gateway counts itself, for /metrics."""

    accepted: dict[str, int] = field(default_factory=dict)  # messages by channel
    _invented: set[str] = field(default_factory=set)  # the other names with their own series

    def message(self, channel: str) -> None:
        label = self._label(channel)
        self.accepted[label] = self.accepted.get(label, 0) + 1

    def _label(self, channel: str) -> str:
        if channel in KNOWN_CHANNELS or channel in self._invented:
            return channel
        if len(self._invented) < OTHER_CHANNELS and channel != OTHER:
            self._invented.add(channel)
            return channel
        return OTHER


class GatewayApi:
    def __init__(self, runtime: Runtime, settings: Settings, feed: EventFeed) -> None:
        self.runtime = runtime
        self.settings = settings
        self.feed = feed
        self.counters = Counters()
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.methods: dict[str, Handler] = {
            "chat.send": checked(p.ChatSend, self.chat_send),
            "chat.abort": checked(p.SessionRef, self.chat_abort),
            "chat.history": checked(p.ChatHistory, self.chat_history),
            "sessions.list": checked(p.SessionsList, self.sessions_list),
            "sessions.get": checked(p.SessionsGet, self.sessions_get),
            "sessions.patch": checked(p.SessionsPatch, self.sessions_patch),
            "sessions.reset": checked(p.SessionRef, self.sessions_reset),
            "sessions.delete": checked(p.SessionRef, self.sessions_delete),
            "events.subscribe": checked(p.Subscribe, self.events_subscribe),
            "models.list": checked(p.NoParams, self.models_list),
            "status": checked(p.NoParams, self.status),
        }

    async def call(self, method: str, params: dict[str, Any], listener: Listener) -> Json:
        handler = self.methods.get(method)
        if handler is None:
            known = ", ".join(sorted(self.methods))
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_METHOD,
                                  f"unknown method {method!r}; methods: {known}")
        return await handler(params, listener)

    # --- chat --------------------------------------------------------------------------

    async def chat_send(self, params: p.ChatSend, listener: Listener) -> Json:
        listener.follow(params.session)  # the sender sees what becomes of its message
        with _about("text"):  # the other parameters were checked already
            result = await self.runtime.handle(
                params.session, params.text, channel=params.channel,
                channel_message_id=params.idempotency_key)
        if isinstance(result, CommandReply):
            return {"command": True, "reply": result.text}
        if not result.duplicate:
            self.counters.message(params.channel)
        message = result.message
        return {
            "command": False,
            "messageId": message.id,
            "session": params.session,
            "sessionId": message.session_id,
            "duplicate": result.duplicate,
            "fate": str(message.fate),
            "reason": None if message.reason is None else str(message.reason),
            "queuedBehind": result.active_run.id if result.active_run else None,
            "queueMode": str(result.queue_mode(self.settings.runtime.queue)),
            "dropped": [inbound_row(m) for m in result.dropped],
        }

    async def chat_abort(self, params: p.SessionRef, listener: Listener) -> Json:
        report = await self.runtime.stop(params.session)
        final = report.final
        return {
            "outcome": str(report.first.outcome),
            "runId": final.id if final else None,
            "status": str(final.status) if final else None,
            "confirmed": report.confirmed,
            "sessionExists": report.session_exists,
            "dropped": [m.id for m in report.first.dropped],
            "compactionStopped": report.compaction_stopped,
            "text": report.describe(),
        }

    async def chat_history(self, params: p.ChatHistory, listener: Listener) -> Json:
        summary = await self.runtime.store.summarize_session(params.session)
        if summary is None:
            raise UnknownSession(params.session)
        entries = await self.runtime.store.transcript(summary.session.id, params.limit)
        # Read after the entries, so that it holds nothing they hold.
        partial = self.runtime.reply_so_far(summary.session.id)
        return {"session": session_row(summary, self.settings.runtime),
                "entries": [transcript_row(e) for e in entries],
                "partial": None if partial is None else {
                    "runId": partial.run_id, "text": partial.text, "end": partial.end}}

    # --- sessions ----------------------------------------------------------------------

    async def sessions_list(self, params: p.SessionsList, listener: Listener) -> Json:
        store = self.runtime.store
        summaries = await store.list_sessions(params.limit)
        return {"sessions": [session_row(s, self.settings.runtime) for s in summaries],
                "total": (await store.counts()).sessions}

    async def sessions_get(self, params: p.SessionsGet, listener: Listener) -> Json:
        store = self.runtime.store
        summary = await store.summarize_session(params.session)
        if summary is None:
            raise UnknownSession(params.session)
        row = session_row(summary, self.settings.runtime)
        session_id = summary.session.id
        runs = await store.list_runs(session_id, params.limit)
        row["runs"] = [run_row(r, await store.list_attempts(r.id)) for r in runs]
        row["inbound"] = [inbound_row(m) for m in await store.list_inbound(session_id,
                                                                            params.limit)]
        row["outbox"] = [outbound_row(o) for o in await store.list_outbox(session_id,
                                                                           params.limit)]
        return row

    async def sessions_patch(self, params: p.SessionsPatch, listener: Listener) -> Json:
        if params.model is not None:
            with _about("model"):
                await self.runtime.set_model(params.session, params.model)
        if params.queue is not None:
            q = params.queue
            with _about("queue"):
                await self.runtime.set_queue(params.session, QueuePatch(
                    mode=q.mode, debounce_ms=q.debounce_ms, cap=q.cap, drop=q.drop))
        return await self.sessions_get(p.SessionsGet(session=params.session, limit=1),
                                       listener)

    async def sessions_reset(self, params: p.SessionRef, listener: Listener) -> Json:
        result = await self.runtime.reset(params.session)
        fresh = result.already_fresh
        return {"session": params.session, "sessionId": result.new.id,
                "previousSessionId": None if fresh else result.old.id,
                "alreadyFresh": fresh, **_stopped(result.stop)}

    async def sessions_delete(self, params: p.SessionRef, listener: Listener) -> Json:
        session = await self.runtime.store.get_session(params.session)
        if session is None:
            raise UnknownSession(params.session)
        result = await self.runtime.delete(params.session)
        return {"session": params.session, "archivedSessionId": session.id,
                **_stopped(result)}

    # --- events, models, status ----------------------------------------------------------

    async def events_subscribe(self, params: p.Subscribe, listener: Listener) -> Json:
        replay = await self.feed.subscribe(listener, params.sessions, params.after)
        return {"sessions": params.sessions, "replayed": replay.replayed,
                "reset": replay.reset, "lastSeq": listener.last_seq}

    async def models_list(self, params: p.NoParams, listener: Listener) -> Json:
        return model_listing(self.settings, await self.runtime.router.cooldowns())

    async def status(self, params: p.NoParams, listener: Listener) -> Json:
        counts = await self.runtime.store.counts()
        return {
            "version": __version__,
            "owner": self.runtime.owner.id,
            "startedAt": self.started_at.isoformat(timespec="seconds"),
            "uptimeSeconds": round(time.monotonic() - self.started),
            "sessions": counts.sessions,
            "activeRuns": counts.active_runs,
            "waitingMessages": counts.waiting,
            "defaultModel": str(self.settings.runtime.default_model),
            "lastSeq": self.feed.last_seq,
        }


def checked(kind: type[p.ParamsT],
            method: Callable[[p.ParamsT, Listener], Awaitable[Json]]) -> Handler:
    """``method``, called with its parameters checked as ``kind`` (the type checker sees
    that ``kind`` is what ``method`` takes)."""

    async def handler(params: dict[str, Any], listener: Listener) -> Json:
        return await method(p.check(kind, params), listener)
    return handler


@contextmanager
def _about(field: str) -> Iterator[None]:
    """Input the runtime refuses in this block is the request's ``field`` (for ``details``)."""
    try:
        yield
    except UnknownSession:
        raise
    except InvalidInput as exc:
        if exc.field is not None:
            raise
        raise InvalidInput(str(exc), field=field) from exc


def _stopped(result: StopResult) -> Json:
    return {"stoppedRunId": result.run.id if result.run else None,
            "dropped": [m.id for m in result.dropped]}
