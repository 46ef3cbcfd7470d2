"""One session as a chat in this process follows it, whichever process does the work.

More than one process can serve a session (two chats on it, a chat and ``clawgate agent``):
any of them may answer a waiting message, and a ``clawgate stop`` elsewhere may drop some.
This process's bus tells what this process does, reply text as it streams; the store's event
feed tells the rest, read when the store changes (at most once a poll interval) and before a
run of this process is told ended. So a follower tells every run of its session:

- a run of this process: its text as it streams, then its end;
- a run another process answered: its whole reply, read from the store, then its end;
- a run of this process whose text it missed (it fell behind the bus, which dropped it; it
  listens afresh at once): the rest of the reply, from the store, before its end.

and every message dropped, once. Events come as the runtime's own (``ReplyDelta``,
``RunChanged``, ``MessageDecided``), whichever their source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from clawgate.domain import Fate, RunStatus, StoredEvent
from clawgate.errors import StoreError
from clawgate.runtime.bus import (
    EventBus,
    MessageDecided,
    ReplyDelta,
    RunChanged,
    RuntimeEvent,
)
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

FEED_BATCH = 500
LOOK_EVERY_S = 1.0  # how long one wait for the store to move lasts (it is then renewed)
REMEMBERED = 256  # ended runs and dropped messages remembered, so each is told once
RUN_ENDED = frozenset(f"run.{status.value}" for status in RunStatus if status.terminal)


class SessionFollower:
    def __init__(self, store: Store, bus: EventBus, owner_id: str, key: str,
                 poll_interval: float, *, after: int | None = None, bus_queue: int = 1000
                 ) -> None:
        """Follow the session from now on: its bus events from now, and what the store
        records after its event ``after`` (None: its newest event when the reading begins).
        """
        self._store = store
        self._bus = bus
        self._owner = owner_id
        self._key = key
        self._poll = poll_interval
        self._bus_queue = bus_queue
        self._events = bus.subscribe(key, maxsize=bus_queue)  # now: nothing is missed
        self._seq = after  # the last stored event looked at
        self._moved = asyncio.Event()  # the store was written since the last look
        self._behind = False  # the bus dropped us: the store tells this process's runs too
        self._shown: dict[str, int] = {}  # by run: how much of its text was told
        self._missed: set[str] = set()  # runs whose text has a gap: the rest comes at the end
        self._awaited: set[str] = set()  # our runs the store shows ended: the bus tells them
        self._recount: set[str] = set()  # our runs whose end the bus may have dropped
        self._ended = _Remembered()  # runs told ended
        self._dropped = _Remembered()  # messages told dropped
        self._closing = False

    def close(self) -> None:
        """End the events, once what the store holds by now has been told."""
        self._closing = True
        self._events.close()

    async def __aiter__(self) -> AsyncIterator[RuntimeEvent]:
        if self._seq is None:
            self._seq = await self._store.last_event_seq()
        watcher = asyncio.create_task(self._watch(), name=f"clawgate follow {self._key}")
        getter: asyncio.Future[RuntimeEvent | None] | None = None
        try:
            while True:
                if self._moved.is_set():
                    self._moved.clear()
                    for told in await self._from_store():
                        yield told
                getter = getter or asyncio.ensure_future(self._events.get())
                if not await _first(getter, self._moved):
                    continue  # the store moved: look at it
                event, getter = getter.result(), None
                if event is not None:
                    for told in await self._from_bus(event):
                        yield told
                elif self._closing:
                    break
                else:  # the bus dropped us (we fell behind): listen afresh, catch up
                    self._listen_afresh()
            self._recount |= self._awaited  # (told on the bus after the close, if at all)
            for told in await self._from_store():  # what other processes did, up to now
                yield told
        finally:
            for task in (watcher, getter):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (watcher, getter) if t is not None),
                                 return_exceptions=True)

    def _listen_afresh(self) -> None:
        """The bus dropped what was published since it fell behind: listen again, and have
        the store tell what was missed (our runs' ends, the rest of their text)."""
        self._events = self._bus.subscribe(self._key, maxsize=self._bus_queue)
        self._behind = True
        self._moved.set()
        self._recount |= self._awaited
        self._awaited.clear()
        self._missed |= {*self._shown, *self._recount}

    # --- this process's events ---------------------------------------------------------

    async def _from_bus(self, event: RuntimeEvent) -> list[RuntimeEvent]:
        if isinstance(event, ReplyDelta):
            return [delta] if (delta := self._text(event)) is not None else []
        if isinstance(event, MessageDecided):
            return [event] if self._tell_message(event) else []
        if not event.run.status.terminal:
            return [event]
        told = await self._from_store()  # (what others stored before this end: first)
        return [*told, *await self._ended_run(event, from_store=event.run.id in self._missed)]

    def _text(self, delta: ReplyDelta) -> ReplyDelta | None:
        """The part of ``delta`` not told yet, or None (a gap: the rest comes at the end)."""
        shown = self._shown.get(delta.run_id, 0)
        if delta.run_id in self._missed or delta.run_id in self._ended:
            return None
        if delta.offset > shown:
            self._missed.add(delta.run_id)
            return None
        text = delta.text[shown - delta.offset:]
        self._shown[delta.run_id] = shown + len(text)
        return ReplyDelta(delta.session_key, delta.session_id, delta.run_id, text, shown)

    async def _ended_run(self, ended: RunChanged, from_store: bool) -> list[RuntimeEvent]:
        """A run's end (once per run), after the text of it not told yet, read from the
        store ``from_store`` (the bus did not carry all of it)."""
        run_id = ended.run.id
        self._awaited.discard(run_id)
        self._missed.discard(run_id)
        if not self._ended.add(run_id):
            return []
        shown = self._shown.pop(run_id, 0)
        told: list[RuntimeEvent] = [ended]
        if from_store:
            reply = await self._store.run_reply(run_id)
            if reply[shown:]:
                told.insert(0, ReplyDelta(self._key, ended.session_id, run_id, reply[shown:],
                                          shown))
        return told

    def _tell_message(self, decided: MessageDecided) -> bool:
        """Whether to tell of a message's fate (a drop is told once, whoever tells it)."""
        return decided.message.fate is not Fate.DROPPED or self._dropped.add(
            decided.message.id)

    # --- what the store records -----------------------------------------------------------

    async def _watch(self) -> None:
        """Say when the store has been written, at most once a poll interval."""
        try:
            version = await self._store.version()
            while True:
                moved = await self._store.changed(version, LOOK_EVERY_S)
                if moved != version:
                    version = moved
                    self._moved.set()
                    await asyncio.sleep(self._poll)
        except StoreError as exc:  # runs of other processes are still told at our runs' ends
            log.warning("could not watch the store for session %s: %s", self._key, exc)

    async def _from_store(self) -> list[RuntimeEvent]:
        """What the store recorded for the session since the last look that the bus did not
        tell: runs other processes ended (this process's too, once the bus dropped us),
        messages dropped."""
        told: list[RuntimeEvent] = []
        keys = frozenset({self._key})
        try:
            for run_id in sorted(self._recount):
                run = await self._store.get_run(run_id)
                if run is not None and run.status.terminal:
                    told += await self._ended_run(RunChanged(self._key, run), from_store=True)
            self._recount.clear()
            while True:
                batch = await self._store.events_after(self._seq or 0, keys, FEED_BATCH)
                for event in batch:
                    self._seq = event.seq
                    told += await self._stored(event)
                if len(batch) < FEED_BATCH:
                    self._behind = False
                    return told
        except StoreError as exc:  # the chat goes on; only what others did is missed
            log.warning("could not read the events of session %s: %s", self._key, exc)
            return told

    async def _stored(self, event: StoredEvent) -> list[RuntimeEvent]:
        if event.kind == "message.dropped" and event.message_id is not None:
            message = await self._store.get_message(event.message_id)
            if message is not None and self._dropped.add(message.id):
                return [MessageDecided(self._key, message)]
        elif event.run_id is not None and event.kind in RUN_ENDED:
            run = await self._store.get_run(event.run_id)
            if run is None or not run.status.terminal or run.id in self._ended:
                return []
            if self._behind or run.owner_id != self._owner:
                return await self._ended_run(RunChanged(self._key, run), from_store=True)
            self._awaited.add(run.id)  # the bus tells it, unless it drops us first
        return []


class _Remembered:
    """Ids seen lately, the oldest forgotten beyond ``REMEMBERED``."""

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def add(self, item: str) -> bool:
        """Remember ``item``; False if it was remembered already."""
        if item in self._ids:
            return False
        self._ids[item] = None
        if len(self._ids) > REMEMBERED:
            del self._ids[next(iter(self._ids))]
        return True


async def _first(getter: asyncio.Future[RuntimeEvent | None], moved: asyncio.Event) -> bool:
    """Wait for the bus's next event or the store to move; True if the event came."""
    if getter.done():
        return True
    waiting = asyncio.ensure_future(moved.wait())
    either: set[asyncio.Future[Any]] = {getter, waiting}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    return getter.done()
