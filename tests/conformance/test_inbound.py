"""Accepting messages: persistence, duplicates, bad input, the queue cap and the claim modes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clawgate.domain import (
    DropPolicy,
    DropReason,
    Fate,
    NewInbound,
    QueueMode,
    QueuePatch,
    QueueSettings,
    Role,
)
from clawgate.errors import InvalidInput
from clawgate.store.protocol import Claim, Deferred, Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import (
    FOLLOWUP,
    LEASE,
    OTHER,
    OWNER,
    claim,
    finish,
    running,
    say,
    set_mode,
)
from tests.stores import StoreBackend


async def test_a_message_is_persisted_pending_and_opens_its_session(store: Store) -> None:
    accepted = await say(store, "hello", key="alice")

    assert accepted.message.fate is Fate.PENDING
    assert accepted.session.key == "alice"
    assert not accepted.duplicate
    assert await store.get_message(accepted.message.id) == accepted.message
    assert [m.text for m in await store.list_inbound(accepted.session.id)] == ["hello"]


async def test_a_redelivered_message_is_recognised_and_changes_nothing(store: Store) -> None:
    first = await say(store, "hello", cmid="tg-1")
    again = await say(store, "hello (redelivered)", cmid="tg-1")

    assert again.duplicate
    assert again.message == first.message
    assert len(await store.list_inbound(first.session.id)) == 1


async def test_the_same_message_id_on_another_channel_is_a_different_message(
    store: Store,
) -> None:
    await say(store, "one", cmid="42")
    other = await store.accept_inbound(
        "s1", NewInbound(channel="elsewhere", text="two", channel_message_id="42"), FOLLOWUP
    )
    assert not other.duplicate


async def test_the_same_message_id_in_another_conversation_is_a_different_message(
    store: Store,
) -> None:
    bobs = await say(store, "bob's secret", key="openai:bob", cmid="idem-1")
    alices = await say(store, "alice asks", key="openai:alice", cmid="idem-1")

    assert not alices.duplicate
    assert alices.session.key == "openai:alice"
    assert alices.message.text == "alice asks"
    assert await store.get_message(bobs.message.id) == bobs.message


async def test_a_redelivery_after_a_reset_is_still_recognised(store: Store) -> None:
    first = await say(store, "hello", cmid="tg-7")
    await store.reset_session("s1")
    again = await say(store, "hello", cmid="tg-7")

    assert again.duplicate
    assert again.message.id == first.message.id
    assert again.message.fate is Fate.DROPPED
    assert again.message.reason is DropReason.RESET


async def test_a_delivered_message_is_found_by_its_id_without_changing_anything(
    store: Store,
) -> None:
    first = await say(store, "hello", key="alice", cmid="tg-8")
    await store.reset_session("alice")
    before = await store.list_inbound(first.session.id)

    found = await store.find_delivered("alice", "test", "tg-8")

    assert found == await store.get_message(first.message.id)  # as it is now: dropped
    assert await store.find_delivered("bob", "test", "tg-8") is None  # another conversation
    assert await store.find_delivered("alice", "elsewhere", "tg-8") is None
    assert await store.find_delivered("alice", "test", "tg-9") is None
    assert await store.list_inbound(first.session.id) == before


async def test_one_waiting_message_can_be_dropped_and_only_while_it_waits(
    store: Store,
) -> None:
    run = await running(store, "first")
    waiting = await say(store, "second")
    later = await say(store, "third")

    dropped = await store.drop_waiting(waiting.message.id, DropReason.STOPPED)

    assert dropped is not None
    assert (dropped.fate, dropped.reason) == (Fate.DROPPED, DropReason.STOPPED)
    assert await store.get_message(waiting.message.id) == dropped
    events = await store.events_after(0)
    assert (events[-1].kind, events[-1].message_id) == ("message.dropped", dropped.id)
    assert await store.drop_waiting(dropped.id, DropReason.RESET) is None  # decided once
    first = (await store.list_inbound(run.session_id))[0]
    assert await store.drop_waiting(first.id, DropReason.STOPPED) is None  # a run took it
    assert await store.drop_waiting("msg_nowhere", DropReason.STOPPED) is None
    fates = [m.fate for m in await store.list_inbound(run.session_id)]
    assert fates == [Fate.ANSWERED, Fate.DROPPED, Fate.PENDING]
    assert (await store.get_message(later.message.id)) == later.message


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("s1", ""),
        ("s1", "   \n"),
        ("s1", "x" * 32_001),
        ("s1", "nul\x00byte"),
        ("", "hi"),
        ("has space", "hi"),
        ("k" * 129, "hi"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    store: Store, key: str, text: str
) -> None:
    await say(store, "kept")
    with pytest.raises(InvalidInput):
        await store.accept_inbound(key, NewInbound(channel="test", text=text), FOLLOWUP)

    sessions = await store.list_sessions()
    assert [s.session.key for s in sessions] == ["s1"]
    assert [m.text for m in await store.list_inbound(sessions[0].session.id)] == ["kept"]


async def test_wrong_types_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="text"):
        await store.accept_inbound(
            "s1", NewInbound(channel="test", text=123), FOLLOWUP  # type: ignore[arg-type]
        )
    with pytest.raises(InvalidInput, match="key"):
        await store.accept_inbound(
            None, NewInbound(channel="test", text="hi"), FOLLOWUP  # type: ignore[arg-type]
        )
    assert await store.list_sessions() == []


@pytest.mark.parametrize(
    ("policy", "reason", "left_waiting"),
    [
        (DropPolicy.OLD, DropReason.QUEUE_FULL_OLDEST, ["b", "c"]),
        (DropPolicy.SUMMARIZE, DropReason.QUEUE_FULL_SUMMARIZED, ["b", "c"]),
        (DropPolicy.NEW, DropReason.QUEUE_FULL_NEWEST, ["a", "b"]),
    ],
)
async def test_a_full_queue_drops_by_policy_and_records_why(
    store: Store, policy: DropPolicy, reason: DropReason, left_waiting: list[str]
) -> None:
    defaults = QueueSettings(mode=QueueMode.FOLLOWUP, debounce_ms=0, cap=2, drop=policy)
    await running(store, "busy")
    for text in ("a", "b"):
        await say(store, text, defaults=defaults)

    third = await say(store, "c", defaults=defaults)

    assert len(third.dropped) == 1
    assert third.dropped[0].reason is reason
    messages = await store.list_inbound(third.session.id)
    assert [m.text for m in messages if m.fate is Fate.PENDING] == left_waiting
    assert [m.text for m in messages if m.fate is Fate.DROPPED] == [third.dropped[0].text]


async def test_summarized_drops_reach_the_next_run_once(store: Store) -> None:
    defaults = QueueSettings(
        mode=QueueMode.FOLLOWUP, debounce_ms=0, cap=1, drop=DropPolicy.SUMMARIZE
    )
    run = await running(store, "busy")
    await say(store, "first idea", defaults=defaults)
    await say(store, "second idea", defaults=defaults)
    await finish(store, run)

    next_claim = await claim(store, run.session_id, defaults=defaults)
    await finish(store, next_claim.run)
    await say(store, "third", defaults=defaults)
    later = await claim(store, run.session_id, defaults=defaults)

    entries = await store.transcript(run.session_id)
    notes = [e for e in entries if e.role is Role.NOTE]
    assert len(notes) == 1
    assert "first idea" in notes[0].text
    assert notes[0].run_id == next_claim.run.id
    assert [m.text for m in later.messages] == ["third"]


async def test_followup_answers_waiting_messages_one_run_each_in_order(store: Store) -> None:
    run = await running(store, "first")
    await say(store, "second")
    await say(store, "third")
    await finish(store, run)

    second = await claim(store, run.session_id)
    assert [m.text for m in second.messages] == ["second"]
    await finish(store, second.run)
    third = await claim(store, run.session_id)
    assert [m.text for m in third.messages] == ["third"]


async def test_collect_folds_all_waiting_messages_into_one_run(store: Store) -> None:
    await set_mode(store, QueueMode.COLLECT)
    run = await running(store, "first")
    await say(store, "second")
    await say(store, "third")
    await finish(store, run)

    collected = await claim(store, run.session_id)

    assert [(m.text, m.fate) for m in collected.messages] == [
        ("second", Fate.ANSWERED), ("third", Fate.MERGED)
    ]
    assert {m.run_id for m in collected.messages} == {collected.run.id}


async def test_interrupt_answers_the_newest_and_drops_the_rest_as_superseded(
    store: Store,
) -> None:
    await set_mode(store, QueueMode.INTERRUPT)
    run = await running(store, "first")
    older = await say(store, "second")
    await say(store, "third")
    await finish(store, run)

    newest = await claim(store, run.session_id)

    assert [m.text for m in newest.messages] == ["third"]
    assert [m.id for m in newest.dropped] == [older.message.id]
    dropped = await store.get_message(older.message.id)
    assert dropped is not None
    assert dropped.reason is DropReason.SUPERSEDED


async def test_interrupt_mode_keeps_the_newest_message_when_the_queue_is_full(
    store: Store,
) -> None:
    drop_new = QueueSettings(mode=QueueMode.INTERRUPT, debounce_ms=0, cap=1,
                             drop=DropPolicy.NEW)
    run = await running(store, "first", defaults=drop_new)
    older = await say(store, "second", defaults=drop_new)

    newest = await say(store, "third", defaults=drop_new)

    assert newest.message.fate is Fate.PENDING  # "answer the newest", whatever the policy
    assert [(m.id, m.reason) for m in newest.dropped] == [
        (older.message.id, DropReason.SUPERSEDED)]
    await finish(store, run)
    assert [m.text for m in (await claim(store, run.session_id, defaults=drop_new)).messages
            ] == ["third"]


async def test_claimed_messages_enter_the_transcript_in_order(store: Store) -> None:
    await set_mode(store, QueueMode.COLLECT)
    run = await running(store, "first")
    await say(store, "second")
    await say(store, "third")
    await finish(store, run, reply="reply one")
    collected = await claim(store, run.session_id)

    entries = await store.transcript(run.session_id)

    assert [(e.role, e.text) for e in entries] == [
        (Role.USER, "first"), (Role.ASSISTANT, "reply one"),
        (Role.USER, "second"), (Role.USER, "third"),
    ]
    assert entries[-1].run_id == collected.run.id


async def test_claimable_sessions_are_those_waiting_with_no_active_run(store: Store) -> None:
    busy = await running(store, "busy", key="busy")
    await say(store, "queued behind", key="busy")
    idle = await say(store, "waiting", key="idle")

    assert await store.claimable_sessions() == [idle.session.id]
    assert await store.claimable_sessions(frozenset({busy.session_id})) == []
    assert await store.claimable_sessions(frozenset()) == []


async def test_claimable_sessions_leave_out_those_the_asker_serves_already(
    store: Store,
) -> None:
    served = [(await say(store, "waiting", key=f"s{n}")).session.id for n in range(3)]
    other = (await say(store, "waiting too", key="other")).session.id

    listed = await store.claimable_sessions(limit=1, excluding=frozenset(served))

    assert listed == [other]  # not hidden behind them, however few are listed
    assert await store.claimable_sessions(excluding=frozenset({other, *served})) == []


async def test_queue_settings_are_overrides_of_the_defaults(store: Store) -> None:
    await store.set_queue("s1", QueuePatch(mode=QueueMode.STEER, cap=5))
    await store.set_queue("s1", QueuePatch(debounce_ms=250))

    session = await store.get_session("s1")

    assert session is not None
    effective = session.effective_queue(QueueSettings())
    assert (effective.mode, effective.cap, effective.debounce_ms) == (QueueMode.STEER, 5, 250)
    assert effective.drop is QueueSettings().drop


async def test_the_queue_settings_of_many_sessions_are_read_at_once(store: Store) -> None:
    changed = await store.set_queue("changed", QueuePatch(mode=QueueMode.STEER, cap=5))
    untouched = (await say(store, "hello", key="untouched")).session
    archived = await store.set_queue("archived", QueuePatch(debounce_ms=250))
    await store.reset_session("archived")
    asked = frozenset({changed.id, untouched.id, archived.id, "ses_unknown"})

    settings = await store.queue_settings(asked)

    assert settings == {changed.id: QueuePatch(mode=QueueMode.STEER, cap=5),
                        untouched.id: QueuePatch()}
    assert await store.queue_settings(frozenset()) == {}


async def test_the_queue_settings_of_more_sessions_than_sqlite_binds_are_read(
    store: Store,
) -> None:
    sessions = [await store.set_queue(f"s{n}", QueuePatch(cap=n % 20 + 1))
                for n in range(1200)]

    settings = await store.queue_settings(frozenset(s.id for s in sessions))

    assert settings == {s.id: s.queue for s in sessions}


COLLECT = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=800)


async def test_messages_that_queued_behind_a_run_wait_out_the_debounce(
    store: Store, clock: ManualClock
) -> None:
    run = await running(store, "first")
    await say(store, "second", defaults=COLLECT)
    clock.advance(0.1)
    await finish(store, run)

    deferred = await store.claim_next(run.session_id, "own_a", LEASE, COLLECT)

    assert isinstance(deferred, Deferred)
    assert deferred.until == clock.now() + timedelta(milliseconds=700)
    clock.advance(0.7)
    assert isinstance(await store.claim_next(run.session_id, "own_a", LEASE, COLLECT), Claim)


async def test_every_process_waits_out_the_debounce_not_only_the_one_that_ran_the_turn(
    backend: StoreBackend, clock: ManualClock
) -> None:
    ran_it, other_process = await backend.handle(), await backend.handle()
    run = await running(ran_it, "first")
    clock.advance(0.1)
    await say(other_process, "second", defaults=COLLECT)
    clock.advance(0.1)
    await say(other_process, "third", defaults=COLLECT)
    clock.advance(0.1)
    await finish(ran_it, run)

    deferred = await other_process.claim_next(run.session_id, OTHER, LEASE, COLLECT)

    assert isinstance(deferred, Deferred)  # 800 ms of quiet after "third", for anyone
    assert deferred.until == clock.now() + timedelta(milliseconds=700)
    clock.advance(0.5)
    await say(ran_it, "fourth", defaults=COLLECT)  # after the run ended, while others wait
    later = await ran_it.claim_next(run.session_id, OWNER, LEASE, COLLECT)
    assert isinstance(later, Deferred)
    assert later.until == clock.now() + timedelta(milliseconds=800)
    clock.advance(0.8)
    taken = await other_process.claim_next(run.session_id, OTHER, LEASE, COLLECT)
    assert isinstance(taken, Claim)
    assert [m.text for m in taken.messages] == ["second", "third", "fourth"]


async def test_a_message_to_an_idle_session_is_claimed_at_once(
    store: Store, clock: ManualClock
) -> None:
    first = await say(store, "hello", defaults=COLLECT)
    assert isinstance(await store.claim_next(first.session.id, OWNER, LEASE, COLLECT), Claim)
    run = (await store.list_runs(first.session.id))[-1]
    await finish(store, run)
    clock.advance(0.01)

    again = await say(store, "hello again", defaults=COLLECT)  # after the run ended

    assert isinstance(await store.claim_next(again.session.id, OWNER, LEASE, COLLECT), Claim)


@pytest.mark.parametrize("defaults", [QueueSettings(mode=QueueMode.INTERRUPT, debounce_ms=800),
                                      QueueSettings(mode=QueueMode.COLLECT, debounce_ms=0)])
async def test_interrupt_mode_and_a_zero_debounce_never_wait(
    store: Store, clock: ManualClock, defaults: QueueSettings
) -> None:
    run = await running(store, "first")
    await say(store, "second")
    clock.advance(0.1)
    await finish(store, run)

    assert isinstance(await store.claim_next(run.session_id, OWNER, LEASE, defaults), Claim)


async def test_the_conversation_is_the_transcript_as_roles_and_text(store: Store) -> None:
    run = await running(store, "question")
    await finish(store, run, reply="answer")
    entries = await store.conversation(run.session_id, 10)
    assert [(e.role, e.text) for e in entries] == [
        (Role.USER, "question"), (Role.ASSISTANT, "answer")]
    assert [e.text for e in await store.conversation(run.session_id, 1)] == ["answer"]
