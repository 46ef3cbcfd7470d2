"""Random interleavings against the promises, on every store.

Two runtime "processes" share one store and one scripted model. Hypothesis drives messages,
stops, resets, queue changes (mode; a cap of 1-3 with any drop policy; a short quiet time,
made by either process or a third connection), model replies, failures and hangs, timeouts,
crashes and restarts; after every step the machine checks what DESIGN.md promises:

* no run is ``running`` (or ``queued``) with an end time, and every finished run has one;
* at most one active run per session;
* every active run has a live owner, or its lease has not yet expired;
* a decided message fate never changes, and at the end every message has one;
* transcripts only grow;
* the summary of a message dropped under ``summarize`` is settled at most once, and never
  changes: told to one run of its own session (in one note of that run, and no other), or
  cleared;
* a message is steered into a running reply only if that run took its messages in steer
  mode, and a reply is interrupted by a newer message only if it took them in interrupt
  mode (the run's recorded mode, whatever the session's is now).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from clawgate.domain import (
    ENDED_BEFORE_START,
    ENDED_OWNER_GONE,
    DropPolicy,
    DropReason,
    Fate,
    InboundMessage,
    QueueMode,
    QueuePatch,
    Role,
    Run,
    RunStatus,
)
from clawgate.errors import ProviderUnavailable
from clawgate.runtime.runtime import Runtime
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock, ScriptedProvider
from tests.integration.harness import SETTINGS
from tests.stores import StoreBackend

T = TypeVar("T")
KEYS = ("a", "b")
LEASE_S = 9
STEP_S = 3  # the clock moves in steps no longer than a renewal period
TEST_SETTINGS = replace(
    SETTINGS, lease=timedelta(seconds=LEASE_S), run_timeout=timedelta(seconds=30),
    poll_interval=0.005,
)
#: The moment that passes before a message is sent, and before the model answers: so what
#: is sent during a reply arrived before it ended, and waits out the quiet time after it.
MOMENT_S = 0.005
#: Quiet times of a few moments: any step of time beyond the lease ends them.
DEBOUNCES_MS = (0, 20, 50)
#: A session's queue at the start: each setting the default (None), or one the machine can
#: reach in a few steps (a small cap).
QUEUES = st.builds(
    QueuePatch, mode=st.sampled_from([None, *QueueMode]),
    debounce_ms=st.sampled_from([None, 20, 50]), cap=st.sampled_from([None, 1, 2, 3]),
    drop=st.sampled_from([None, *DropPolicy]),
)
#: What a run ended by a newer message (interrupt mode) records: its owner ended it, or the
#: store did (it had not started, or its owner was gone). No other stop ends a run so.
INTERRUPTED_BY_A_MESSAGE = ("interrupted by a newer message", ENDED_BEFORE_START,
                            ENDED_OWNER_GONE)
#: The note a run is told of messages dropped under ``summarize`` by (``summary_note``).
SUMMARY_NOTE = re.compile(r"\[\d+ earlier messages? (?:was|were) dropped from a full queue: (.*)\]")


class GatewayMachine(RuleBasedStateMachine):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = tempfile.TemporaryDirectory()
        self.clock = ManualClock()
        self.backend = StoreBackend(self.kind, Path(self.folder.name), self.clock)
        self.model = ScriptedProvider("scripted")
        self.live: list[Runtime] = []
        self.dead_owners: set[str] = set()
        self.sent = 0
        self.fates: dict[str, Fate] = {}
        self.transcripts: dict[str, list[tuple[int, str]]] = {}
        self.sessions_seen: set[str] = set()  # archived ones too: their messages still count
        self.summaries: dict[str, tuple[str | None, DropReason | None]] = {}  # settled ones
        self.events_seen = 0
        self.started: set[str] = set()  # runs seen running in the event feed
        self.steered_into: set[str] = set()  # runs a message was merged into once running
        self.observer: Store = self.run(self.backend.handle())
        self.run(self._start_runtime())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    async def _start_runtime(self) -> None:
        store = await self.backend.handle()
        runtime = Runtime(store, {"scripted": self.model}, TEST_SETTINGS)
        await runtime.start()
        self.live.append(runtime)

    # --- rules ------------------------------------------------------------------------

    @initialize(queues=st.lists(QUEUES, min_size=len(KEYS), max_size=len(KEYS)),
                opened=st.lists(st.booleans(), min_size=len(KEYS), max_size=len(KEYS)))
    def start_sessions(self, queues: list[QueuePatch], opened: list[bool]) -> None:
        """Each session starts with the defaults or a small queue (so that it fills within
        a few messages), with any drop policy and quiet time; maybe with a first message,
        whose reply is under way (what follows waits behind it)."""
        for key, queue, first in zip(KEYS, queues, opened, strict=True):
            self.run(self.observer.set_queue(key, queue))
            if first:
                self._send(key, 0, 1)

    # Two rules that send (Hypothesis leaves some rules out of each example): one message,
    # and a few in a row (typed quickly, or by several people), what fills a queue.

    @rule(key=st.sampled_from(KEYS), process=st.integers(0, 1))
    def send(self, key: str, process: int) -> None:
        self._send(key, process, 1)

    @rule(key=st.sampled_from(KEYS), process=st.integers(0, 1), count=st.integers(2, 4))
    def send_several(self, key: str, process: int, count: int) -> None:
        self._send(key, process, count)

    def _send(self, key: str, process: int, count: int) -> None:
        runtime = self.live[process % len(self.live)]
        for _ in range(count):
            self.clock.advance(MOMENT_S)
            self.sent += 1
            self.run(runtime.send(key, f"m{self.sent}"))
        self.settle()

    @rule(key=st.sampled_from(KEYS), process=st.integers(0, 1))
    def stop(self, key: str, process: int) -> None:
        async def stop() -> None:
            session = await self.observer.get_session(key)
            if session is None:
                return
            active = [r for r in await self.observer.active_runs()
                      if r.session_id == session.id]
            if active and active[0].owner_id in self.dead_owners:
                await self.observer.request_stop(session.id)  # nobody will confirm it
                return
            await self.live[process % len(self.live)].stop(key)

        self.run(stop())
        self.settle()

    @rule(key=st.sampled_from(KEYS))
    def reset(self, key: str) -> None:
        async def reset() -> None:
            if await self.observer.get_session(key) is not None:
                await self.live[0].reset(key)

        self.run(reset())
        self.settle()

    @rule(key=st.sampled_from(KEYS), mode=st.sampled_from(list(QueueMode)))
    def change_mode(self, key: str, mode: QueueMode) -> None:
        self.run(self.live[0].set_queue(key, QueuePatch(mode=mode)))
        self.settle()

    @rule(key=st.sampled_from(KEYS), cap=st.integers(1, 3),
          drop=st.sampled_from(list(DropPolicy)), via=st.integers(0, 2))
    def change_cap(self, key: str, cap: int, drop: DropPolicy, via: int) -> None:
        self.run(self._set_queue(via, key, QueuePatch(cap=cap, drop=drop)))
        self.settle()

    @rule(key=st.sampled_from(KEYS), debounce_ms=st.sampled_from(DEBOUNCES_MS),
          via=st.integers(0, 2))
    def change_debounce(self, key: str, debounce_ms: int, via: int) -> None:
        self.run(self._set_queue(via, key, QueuePatch(debounce_ms=debounce_ms)))
        self.settle()

    async def _set_queue(self, via: int, key: str, patch: QueuePatch) -> None:
        """Through a runtime (0, 1), or another connection (2: `clawgate` elsewhere)."""
        if via < len(self.live):
            await self.live[via].set_queue(key, patch)
        else:
            await self.observer.set_queue(key, patch)

    @rule(text=st.sampled_from(["ok", "sure", ""]))
    def model_replies(self, text: str) -> None:
        calls = self.model.open_calls()
        if calls:
            self.clock.advance(MOMENT_S)
            calls[0].finish(text)
        self.settle()

    @rule()
    def model_fails(self) -> None:
        calls = self.model.open_calls()
        if calls:
            self.clock.advance(MOMENT_S)
            calls[0].fail(ProviderUnavailable("overloaded", provider="scripted"))
        self.settle()

    @rule()
    def model_streams_a_little(self) -> None:
        calls = self.model.open_calls()
        if calls:
            calls[-1].delta("partial ")
        self.settle()

    @rule()
    def time_passes_beyond_the_run_timeout(self) -> None:
        self.advance(31)

    @rule()
    def time_passes_beyond_the_lease(self) -> None:
        self.advance(LEASE_S + 1)

    @precondition(lambda self: len(self.live) == 2)
    @rule(process=st.integers(0, 1))
    def crash(self, process: int) -> None:
        victim = self.live.pop(process)
        self.dead_owners.add(victim.owner.id)
        self.run(victim.store.close())
        victim.abandon()
        self.settle()

    @precondition(lambda self: len(self.live) < 2)
    @rule()
    def restart(self) -> None:
        self.run(self._start_runtime())
        self.settle()

    # --- moving time and waiting for quiet ---------------------------------------------

    def advance(self, seconds: int) -> None:
        while seconds > 0:
            step = min(STEP_S, seconds)
            self.clock.advance(step)
            seconds -= step
            for runtime in list(self.live):
                self.run(runtime.tick())
        self.settle()

    def settle(self, within: float = 3.0) -> None:
        """Let the runtimes work until nothing changes for a few poll intervals."""
        deadline = time.monotonic() + within
        previous, quiet = None, 0
        while quiet < 4 and time.monotonic() < deadline:
            self.run(asyncio.sleep(0.004))
            current = self.run(self._fingerprint())
            quiet = quiet + 1 if current == previous else 0
            previous = current

    async def _fingerprint(self) -> tuple[object, ...]:
        runs = await self.observer.active_runs()
        waiting = await self.observer.claimable_sessions()
        sessions = await self.observer.list_sessions()
        return (
            sorted((r.id, r.status) for r in runs), tuple(waiting),
            tuple((s.session.id, s.pending, s.latest_run and s.latest_run.status)
                  for s in sessions),
            len(self.model.calls), len(self.model.open_calls()),
        )

    # --- the promises --------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        now = self.clock.now()
        live_owners = {r.owner.id for r in self.live}
        active_per_session: dict[str, int] = {}
        self.sessions_seen |= {s.session.id for s in await self.observer.list_sessions()}
        for session_id in sorted(self.sessions_seen):
            for run in await self.observer.list_runs(session_id, limit=1000):
                if run.status.active:
                    assert run.ended_at is None, run
                    assert run.runtime_ms is None, run
                    active_per_session[run.session_id] = (
                        active_per_session.get(run.session_id, 0) + 1)
                    assert run.owner_id in live_owners or run.lease_expires_at >= now, run
                else:
                    assert run.ended_at is not None, run
                    assert run.runtime_ms is not None, run
                    _check_interrupted_by_its_mode(run)
            await self._check_messages_and_transcript(session_id)
        assert all(count == 1 for count in active_per_session.values()), active_per_session
        await self._check_summaries()
        await self._check_steering()

    async def _check_summaries(self) -> None:
        """A summary is settled once: told in one note of one run of its session, or
        cleared; and what became of it never changes."""
        noted: dict[str, tuple[str, str | None]] = {}  # message text -> session, run told
        summarized: dict[str, InboundMessage] = {}
        for session_id in sorted(self.sessions_seen):
            notes = [e for e in await self.observer.transcript(session_id) if e.role is Role.NOTE]
            for entry in notes:
                for text in _noted_texts(entry.text):
                    assert text not in noted, ("a summary told twice", text, entry)
                    noted[text] = (session_id, entry.run_id)
            summarized |= {m.text: m for m in await self.observer.list_inbound(
                session_id, limit=10_000) if m.reason is DropReason.QUEUE_FULL_SUMMARIZED}
        for text, (session_id, run_id) in noted.items():
            message = summarized.get(text)
            assert message is not None, ("a note about no summarized message", text)
            assert (message.session_id, message.summarized_in) == (session_id, run_id), message
        for message in summarized.values():
            settled = (message.summarized_in, message.summary_cleared)
            assert None in settled, message
            assert (message.summarized_in is not None) == (message.text in noted), message
            before = self.summaries.get(message.id)
            assert before is None or before == settled, (message, before)
            if settled != (None, None):
                self.summaries[message.id] = settled

    async def _check_steering(self) -> None:
        """A message merged into a run already running was steered: that run took its own
        messages in steer mode."""
        while events := await self.observer.events_after(self.events_seen):
            for event in events:
                if event.kind == "run.running" and event.run_id:
                    self.started.add(event.run_id)
                elif event.kind == "message.merged" and event.run_id in self.started:
                    self.steered_into.add(event.run_id)
            self.events_seen = events[-1].seq
        for run_id in sorted(self.steered_into):
            run = await self.observer.get_run(run_id)
            assert run is not None
            assert run.queue_mode is QueueMode.STEER, run

    async def _check_messages_and_transcript(self, session_id: str) -> None:
        for message in await self.observer.list_inbound(session_id, limit=10_000):
            before = self.fates.get(message.id)
            if before is not None and before is not Fate.PENDING:
                assert message.fate is before, (message, before)
            self.fates[message.id] = message.fate
            if message.fate in (Fate.ANSWERED, Fate.MERGED):
                run = await self.observer.get_run(message.run_id or "")
                assert run is not None, message
                assert run.session_id == session_id, (message, run)
        entries = [(e.seq, e.text) for e in await self.observer.transcript(session_id)]
        seen = self.transcripts.get(session_id, [])
        assert entries[: len(seen)] == seen, "a transcript lost or changed entries"
        self.transcripts[session_id] = entries

    def teardown(self) -> None:
        try:
            self._drain()
            self.run(self._check())
            assert all(f is not Fate.PENDING for f in self.fates.values()), self.fates
        finally:
            for runtime in self.live:
                self.run(runtime.close(grace=0))
            self.run(self.backend.close())
            self.loop.close()
            self.folder.cleanup()

    def _drain(self) -> None:
        """Answer everything still open; every message must then have its fate."""
        if not self.live:
            self.run(self._start_runtime())
        for _ in range(40):
            for call in self.model.open_calls():
                call.finish("done")
            self.advance(LEASE_S + 1)
            self.run(self._check())
            pending = [f for f in self.fates.values() if f is Fate.PENDING]
            active = self.run(self.observer.active_runs())
            if not pending and not active:
                return
        raise AssertionError(f"did not drain: {len(pending)} waiting, {active}")


def _check_interrupted_by_its_mode(run: Run) -> None:
    if run.status is RunStatus.INTERRUPTED and run.error in INTERRUPTED_BY_A_MESSAGE:
        assert run.queue_mode is QueueMode.INTERRUPT, run


def _noted_texts(note: str) -> list[str]:
    """The messages a note about messages dropped from a full queue names (the machine's
    messages are short and unique: each is named whole)."""
    told = SUMMARY_NOTE.fullmatch(note)
    return [] if told is None else told.group(1).split("; ")


class MemoryMachine(GatewayMachine):
    kind = "memory"


class SqliteMachine(GatewayMachine):
    kind = "sqlite"


CHECKS = settings(
    max_examples=25, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_promises_hold_in_memory() -> None:
    run_state_machine_as_test(MemoryMachine, settings=CHECKS)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_promises_hold_on_sqlite() -> None:
    run_state_machine_as_test(SqliteMachine, settings=CHECKS)

