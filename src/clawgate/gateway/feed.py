"""Events for connected clients: the store's event table, tailed once, fanned out by session.

The store is the record: every event a client receives has the ``seq`` of its row, so a
client that reconnects asks for what came after the last ``seq`` it saw and gets exactly
that, from the store. One task tails the table for the whole gateway; the runtime's bus
wakes it at once, and so does the store when its version moves (work done by other
processes); it never polls the table for nothing. Reply text streams straight from the bus
(``run.delta``, no ``seq``: it is not stored until the run ends, when the transcript holds
it). Each event is offered only to the listeners that follow its session (``Followers``), as
one frame they share (``outgoing``).

One event is the connection's, not a session's: ``gateway.shutdown`` (no ``seq``; not
stored), sent to every client once the gateway begins to shut down, and at once to a client
that connects during the grace period.

Order: a client sees a run's ``run.running``, then its text, then how it ended. The runtime
publishes text after it stores ``running`` and before it stores the end, so the feed takes in
every published delta before it hands out what it just read from the store, and holds back a
run's text until that run's ``run.running`` has gone out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from clawgate.domain import RunStatus, StoredEvent
from clawgate.errors import StoreError
from clawgate.gateway.outgoing import Frame, FrameQueue, Outgoing, StoredFrame, TextFrame
from clawgate.runtime.bus import EventBus, ReplyDelta, RuntimeEvent
from clawgate.store.protocol import Store

log = logging.getLogger(__name__)

BATCH = 500
# A backlog is replayed a page at a time, so each read, and each burst of frames the client's
# connection sends before the loop runs anything else, stays short.
REPLAY_PAGE = 100
EARLY_TEXT_LIMIT = 2000  # deltas held for one run while its run.running is not yet read
TERMINAL_EVENTS = frozenset(f"run.{status.value}" for status in RunStatus if status.terminal)
LISTENER_QUEUE = 2000
LIVE_QUEUE = 10_000  # bus events not yet taken in (the tail is behind)
FLUSH_POLL = 0.02
LOOK_EVERY_S = 1.0  # the tail looks whether the store moved this often, even without news


@dataclass(frozen=True, slots=True)
class Replay:
    replayed: int  # stored events sent again
    reset: bool  # the client's seq was beyond the store's newest event: it must reload


class Listener:
    """One client's view of the feed: the sessions it follows and what it has been sent.

    What a client is sent is always every stored event it follows up to ``last_seq``, in
    order, then possibly ``feed.lagged``: when ``bound`` frames wait unsent, the next one is
    not queued and the marker takes the slot kept for it, naming the last ``seq`` queued, so
    ``after`` that seq brings back exactly what was skipped. A run's text that comes while
    its previous piece still waits joins that piece (see ``outgoing``).
    """

    def __init__(self, followers: Followers, bound: int = LISTENER_QUEUE) -> None:
        self._keys: set[str] | None = set()  # None: every session
        self.last_seq = 0  # of the last stored event queued for the client
        self.frames = FrameQueue(bound + 1)  # +1: the marker
        self.lagged = False
        self._followers = followers
        self._bound = bound
        self._held: list[tuple[StoredEvent | None, Outgoing]] | None = None  # during replay

    @property
    def keys(self) -> frozenset[str] | None:
        """The sessions followed now (None: every session)."""
        return None if self._keys is None else frozenset(self._keys)

    def follow(self, key: str) -> None:
        """Follow one more session (a client may follow thousands, one at a time)."""
        if self._keys is not None and key not in self._keys:
            self._keys.add(key)
            self._followers.add(self, key)

    def follow_only(self, keys: frozenset[str] | None) -> None:
        """Follow these sessions (None: every session) and no others."""
        self._keys = None if keys is None else set(keys)
        self._followers.update(self, keys)

    def offer(self, event: StoredEvent | None, frame: Outgoing) -> None:
        """A live frame (``event``: the stored event it shows; None for text)."""
        if self._held is not None:
            self._held.append((event, frame))
            return
        self.deliver(event, frame)

    def deliver(self, event: StoredEvent | None, frame: Outgoing) -> bool:
        """Send now (replay uses this directly; live frames go through ``offer``).

        True when the frame was queued for the client.
        """
        if event is None:
            return self._send(frame)
        if event.seq <= self.last_seq or not self._send(frame):
            return False
        self.last_seq = event.seq
        return True

    def _send(self, frame: Outgoing) -> bool:
        """Queue the frame; False when the client is too far behind (it was told so)."""
        if self.lagged:
            return False
        if isinstance(frame, TextFrame) and self.frames.join(frame):
            return True
        if self.frames.qsize() >= self._bound:
            self.lagged = True  # the client must resubscribe from the seq the marker names
            if not self.frames.full():  # else a marker is already waiting (it resubscribed
                self.frames.put_nowait(Outgoing(  # without reading its backlog): it holds
                    {"type": "event", "event": "feed.lagged", "seq": None,
                     "payload": {"lastSeq": self.last_seq}}))
            return False
        self.frames.put_nowait(frame)
        return True

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for event, frame in held:
            self.deliver(event, frame)


class Followers:
    """The listeners of each session, and those of every session: an event is offered only
    to those who follow it, however many clients follow other sessions."""

    def __init__(self) -> None:
        self._of_key: dict[str, set[Listener]] = {}
        self._of_all: set[Listener] = set()
        self._indexed: dict[Listener, set[str] | None] = {}  # by what, for each

    def of(self, key: str) -> list[Listener]:
        return [*self._of_all, *self._of_key.get(key, ())]

    def update(self, listener: Listener, keys: frozenset[str] | None) -> None:
        """Index ``listener`` by these sessions (None: every session) alone."""
        self.remove(listener)
        if keys is None:
            self._indexed[listener] = None
            self._of_all.add(listener)
            return
        self._indexed[listener] = set()
        for key in keys:
            self.add(listener, key)

    def add(self, listener: Listener, key: str) -> None:
        """Index ``listener`` by one more session, leaving the others as they are."""
        keys = self._indexed.setdefault(listener, set())
        if keys is None:  # it follows every session
            return
        keys.add(key)
        self._of_key.setdefault(key, set()).add(listener)

    def remove(self, listener: Listener) -> None:
        if listener not in self._indexed:
            return
        keys = self._indexed.pop(listener)
        self._of_all.discard(listener)
        for key in keys or ():
            listeners = self._of_key[key]
            listeners.discard(listener)
            if not listeners:
                del self._of_key[key]


class ShutdownNotice:
    """Tells every connection, once, that the gateway is shutting down and how long replies
    in progress may still take."""

    def __init__(self) -> None:
        self._begun = asyncio.Event()
        self._at: datetime | None = None
        self._grace_left: Callable[[], float] = lambda: 0.0

    def begin(self, at: datetime, grace_left: Callable[[], float]) -> None:
        if not self._begun.is_set():
            self._at, self._grace_left = at, grace_left
            self._begun.set()

    async def frame(self) -> Frame:
        """The event, once the shutdown has begun (with the grace left when it is asked)."""
        await self._begun.wait()
        assert self._at is not None
        return {"type": "event", "event": "gateway.shutdown", "seq": None,
                "payload": {"graceSeconds": round(self._grace_left(), 1),
                            "at": self._at.isoformat(timespec="milliseconds")}}


class EventFeed:
    def __init__(self, store: Store, bus: EventBus, poll_interval: float,
                 live_queue: int = LIVE_QUEUE, listener_queue: int = LISTENER_QUEUE) -> None:
        self._store = store
        self._bus = bus
        self._look_every = max(poll_interval, LOOK_EVERY_S)  # a look with no news: a safety net
        self._live_queue = live_queue
        self._listener_queue = listener_queue
        self._listeners: set[Listener] = set()
        self._followers = Followers()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._live_events = bus.subscribe(maxsize=live_queue)
        self._running: set[str] = set()  # runs whose run.running has gone out, until they end
        self._early: dict[str, list[ReplyDelta]] = {}  # text that came before its run.running
        self.last_seq = 0
        self.shutdown = ShutdownNotice()

    async def start(self) -> None:
        self.last_seq = await self._store.last_event_seq()
        self._tasks = [asyncio.create_task(self._tail(), name="clawgate feed tail"),
                       asyncio.create_task(self._live(), name="clawgate feed live"),
                       asyncio.create_task(self._watch(), name="clawgate feed watch")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._live_events.close()
        for listener in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                listener.frames.put_nowait(None)

    def listener(self) -> Listener:
        listener = Listener(self._followers, self._listener_queue)
        listener.last_seq = self.last_seq
        self._listeners.add(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        self._followers.remove(listener)

    async def subscribe(
        self, listener: Listener, keys: Iterable[str] | None, after: int | None
    ) -> Replay:
        """Follow these sessions (None: all); replay stored events after ``after`` first.

        An ``after`` beyond the newest stored event (a client that saw another database, or
        this one before a restore) cannot be resumed from: the client gets ``reset`` and
        follows from the newest event; it must reload what it shows.
        """
        listener.follow_only(None if keys is None else frozenset(keys))
        listener.lagged = False
        if after is None:
            listener.last_seq = max(listener.last_seq, self.last_seq)
            return Replay(0, reset=False)
        newest = await self._store.last_event_seq()
        if after > newest:
            listener.last_seq = newest
            return Replay(0, reset=True)
        listener.hold()
        listener.last_seq = after
        replayed = 0
        try:
            while not listener.lagged:  # a lagged client resubscribes from what it got
                batch = await self._store.events_after(
                    listener.last_seq, listener.keys, REPLAY_PAGE)
                replayed += sum(listener.deliver(event, StoredFrame(event)) for event in batch)
                if len(batch) < REPLAY_PAGE:
                    break
        finally:
            listener.release()
        return Replay(replayed, reset=False)

    async def flush(self, within: float) -> None:
        """Hand out every event stored so far and let listeners send it (at most ``within`` s).

        Used before the server closes connections, so clients see how their runs ended.
        """
        try:
            newest = await self._store.last_event_seq()
        except StoreError:
            return
        self.wake()
        for _ in range(max(1, round(within / FLUSH_POLL))):
            if self.last_seq >= newest and all(
                    listener.frames.empty() for listener in self._listeners):
                return
            await asyncio.sleep(FLUSH_POLL)

    def wake(self) -> None:
        self._wake.set()

    # --- the store's events --------------------------------------------------------------

    async def _watch(self) -> None:
        """Wake the tail whenever the store is written (by another process, say)."""
        try:
            version = await self._store.version()
            while True:
                moved = await self._store.changed(version, self._look_every)
                if moved != version:
                    version = moved
                    self.wake()
        except StoreError as exc:  # the tail still looks every so often
            log.warning("event feed stopped watching the store: %s", exc)

    async def _tail(self) -> None:
        seen: int | None = None  # the store's version when it was last read
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._look_every):
                    woken = await self._wake.wait()
            self._wake.clear()
            try:
                version = await self._store.version()  # unchanged: nothing new to read
                if woken or version != seen:
                    await self._read_new()
                    seen = version
            except StoreError as exc:
                log.warning("event feed could not read the store: %s", exc)

    async def _read_new(self) -> None:
        while True:
            batch = await self._store.events_after(self.last_seq, None, BATCH)
            self._take_live()  # text published before these rows were stored goes first
            for event in batch:
                self.last_seq = event.seq
                self._hand_out(event)
            if len(batch) < BATCH:
                return

    def _hand_out(self, event: StoredEvent) -> None:
        run_id = event.run_id
        if run_id is None:
            self._offer(event)
        elif event.kind == "run.running":
            self._offer(event)
            self._running.add(run_id)
            self._release_early(run_id)
        elif event.kind in TERMINAL_EVENTS:
            self._release_early(run_id)  # its running was never read: text before the end
            self._offer(event)
            self._running.discard(run_id)
        else:
            self._offer(event)

    # --- live text from this process ------------------------------------------------------

    async def _live(self) -> None:
        while True:
            if self._live_events.closed:  # fell behind and was dropped: listen afresh
                self._live_events = self._bus.subscribe(maxsize=self._live_queue)
                self.wake()  # what was missed is in the store
            event = await self._live_events.get()
            if event is not None:
                self._take(event)
                self._take_live()

    def _take_live(self) -> None:
        """Take in everything the bus has published so far, without waiting.

        A subscription that fell behind is left to ``_live``, which replaces it.
        """
        events = self._live_events
        while not events.closed and not events.queue.empty():
            event = events.queue.get_nowait()
            if event is not None:
                self._take(event)

    def _take(self, event: RuntimeEvent) -> None:
        if not isinstance(event, ReplyDelta):
            self.wake()  # something was stored: the tail reads it
        elif event.run_id in self._running:
            self._offer(event)
        else:
            early = self._early.setdefault(event.run_id, [])
            early.append(event)
            if len(early) >= EARLY_TEXT_LIMIT:  # never held without bound
                self._release_early(event.run_id)

    def _release_early(self, run_id: str) -> None:
        for delta in self._early.pop(run_id, ()):
            self._offer(delta)

    def _offer(self, item: StoredEvent | ReplyDelta) -> None:
        """Offer to the clients that follow the item's session one frame, shared by all."""
        listeners = self._followers.of(item.session_key)
        if not listeners:
            return
        if isinstance(item, ReplyDelta):
            text = TextFrame(item)
            for listener in listeners:
                listener.offer(None, text)
            return
        frame = StoredFrame(item)
        for listener in listeners:
            listener.offer(item, frame)
