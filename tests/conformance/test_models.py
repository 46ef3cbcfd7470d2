"""What real providers need from the store: attempts, cached usage, cooldowns, summaries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clawgate.domain import Attempt, ModelRef, Role, RunOutcome, RunStatus, Usage
from clawgate.store.protocol import Store
from clawgate.testing import ManualClock
from tests.conformance.helpers import OTHER, OWNER, finish, running

WINDOWS = (60.0, 300.0, 1500.0, 3600.0)
SONNET = ModelRef("anthropic", "claude")


async def test_a_run_records_who_answered_what_was_tried_and_cached_tokens(
    store: Store,
) -> None:
    run = await running(store)
    tried = (
        Attempt(ModelRef("openai", "gpt"), "work", "rate_limited", "slow down"),
        Attempt(ModelRef("openai", "gpt"), "home", "auth", "bad key"),
        Attempt(SONNET, "default", "answered"),
    )
    ended = await store.finish_run(run.id, OWNER, RunOutcome(
        RunStatus.DONE, "hi", Usage(100, 20, 64), model=SONNET, profile="default",
        attempts=tried))

    assert ended is not None
    assert (ended.model, ended.profile, ended.usage) == (SONNET, "default", Usage(100, 20, 64))
    assert await store.list_attempts(run.id) == list(tried)
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage.cached_tokens == 64


async def test_a_summary_stands_for_what_it_covers(store: Store) -> None:
    first = await running(store, "one")
    await finish(store, first, "reply one")
    second = await running(store, "two")
    entries = await store.conversation(first.session_id, 10)
    covered = entries[1].seq  # "one" and "reply one"

    assert await store.append_summary(first.session_id, "they said one", covered, Usage(5, 2),
                                      run_id=second.id, owner_id=OWNER)
    shown = await store.conversation(first.session_id, 10)

    assert [(e.text, e.summary) for e in shown] == [("they said one", True), ("two", False)]
    everything = await store.transcript(first.session_id)
    assert [e.text for e in everything] == ["one", "reply one", "two", "they said one"]
    assert everything[-1].role is Role.NOTE
    assert everything[-1].covers_through == covered


async def test_a_summary_covering_less_written_later_does_not_bring_turns_back(
    store: Store,
) -> None:
    first = await running(store, "one")
    await finish(store, first, "reply one")
    second = await running(store, "two")
    await finish(store, second, "reply two")
    _, reply_one, _, reply_two = await store.conversation(first.session_id, 10)
    await store.append_summary(first.session_id, "one and two", reply_two.seq, Usage())

    # a /compact that read the conversation before and finished after
    await store.append_summary(first.session_id, "only one", reply_one.seq, Usage())
    shown = await store.conversation(first.session_id, 10)

    assert [(e.text, e.summary) for e in shown] == [("one and two", True)]


async def test_a_summary_inside_a_run_is_fenced(store: Store) -> None:
    run = await running(store, "one")
    assert not await store.append_summary(run.session_id, "x", 1, Usage(), run_id=run.id,
                                          owner_id=OTHER)
    assert [e.text for e in await store.transcript(run.session_id)] == ["one"]


async def test_a_summary_outside_a_run_counts_its_usage_on_the_session(store: Store) -> None:
    run = await running(store, "one")
    await finish(store, run, "reply")
    assert await store.append_summary(run.session_id, "summary", 2, Usage(30, 5))
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(30, 5)


async def test_a_summary_inside_a_run_counts_its_usage_at_once_on_the_run_and_the_session(
    store: Store,
) -> None:
    run = await running(store, "one")
    assert await store.append_summary(run.session_id, "summary", 1, Usage(30, 5, 8),
                                      run_id=run.id, owner_id=OWNER)
    # its process dies now: the run is ended by recovery, never by its owner
    recovered = await store.recover_owner(OWNER, "the process that ran it exited")

    assert [(r.status, r.usage) for r in recovered] == [
        (RunStatus.INTERRUPTED, Usage(30, 5, 8))]
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(30, 5, 8)


async def test_a_run_that_summarised_then_finished_counts_each_token_once(store: Store) -> None:
    run = await running(store, "one")
    await store.append_summary(run.session_id, "summary", 1, Usage(30, 5, 8), run_id=run.id,
                               owner_id=OWNER)
    # the owner reports everything the run spent: the summary's call and the reply's
    ended = await store.finish_run(run.id, OWNER, RunOutcome(
        RunStatus.DONE, "reply", Usage(30 + 12, 5 + 3, 8)))

    assert ended is not None
    assert ended.usage == Usage(42, 8, 8)
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(42, 8, 8)


async def test_cooldowns_grow_with_each_failure_and_success_forgives(
    store: Store, clock: ManualClock
) -> None:
    first = await store.record_cooldown("openai:work", "rate limited", WINDOWS, None)
    second = await store.record_cooldown("openai:work", "rate limited", WINDOWS, None)
    told = await store.record_cooldown("openai:home", "429", WINDOWS, retry_after=12)

    assert first.until == clock.now() + timedelta(seconds=60)
    assert (second.failures, second.until) == (2, clock.now() + timedelta(seconds=300))
    assert told.until == clock.now() + timedelta(seconds=12)  # the provider said
    assert {c.profile_key for c in await store.cooldowns()} == {"openai:work", "openai:home"}

    await store.clear_cooldown("openai:work")
    again = await store.record_cooldown("openai:work", "auth", WINDOWS, None)
    assert again.failures == 1


async def test_a_model_rests_apart_from_its_key_and_an_answer_forgives_only_its_own(
    store: Store,
) -> None:
    await store.record_cooldown("openai:work", "rate limited", WINDOWS, None, model="gpt-a")
    await store.record_cooldown("openai:work", "rate limited", WINDOWS, None, model="gpt-b")
    whole = await store.record_cooldown("openai:work", "auth", WINDOWS, None)
    again = await store.record_cooldown("openai:work", "rate limited", WINDOWS, None, "gpt-a")
    assert (whole.model, whole.failures) == (None, 1)  # counted apart from the models'
    assert (again.model, again.failures) == ("gpt-a", 2)
    assert {(c.profile_key, c.model) for c in await store.cooldowns()} == {
        ("openai:work", None), ("openai:work", "gpt-a"), ("openai:work", "gpt-b")}

    await store.clear_cooldown("openai:work", "gpt-b")  # gpt-b answered on this key
    assert [(c.model, c.failures) for c in await store.cooldowns()] == [("gpt-a", 2)]


async def test_a_rest_is_its_key_s_and_a_new_key_s_failures_count_from_one(
    store: Store, clock: ManualClock
) -> None:
    await store.record_cooldown("openai:work", "auth", WINDOWS, None, key_fingerprint="aaaa1111")
    again = await store.record_cooldown("openai:work", "auth", WINDOWS, None, None, "aaaa1111")
    other = await store.record_cooldown("openai:work", "auth", WINDOWS, None, None, "bbbb2222")
    assert (again.failures, other.failures) == (2, 1)
    assert other.until == clock.now() + timedelta(seconds=60)
    assert [(c.failures, c.key_fingerprint) for c in await store.cooldowns()] == [
        (1, "bbbb2222")]


async def test_cooldown_windows_stop_growing_at_the_last_one(store: Store) -> None:
    for _ in range(6):
        last = await store.record_cooldown("p:x", "overloaded", WINDOWS, None)
    assert last.failures == 6
    assert (last.until - store.clock.now()).total_seconds() == 3600


@pytest.mark.parametrize("asked", [1e10, float("inf")])
async def test_a_retry_after_however_long_rests_a_key_at_most_an_hour(
    store: Store, asked: float
) -> None:
    rest = await store.record_cooldown("p:x", "rate limited", WINDOWS, asked, model="m")
    assert (rest.until - store.clock.now()).total_seconds() == 3600


@pytest.mark.parametrize("status", [RunStatus.KILLED, RunStatus.FAILED, RunStatus.TIMEOUT])
async def test_tokens_spent_count_whatever_the_run_ended_as(
    store: Store, status: RunStatus
) -> None:
    run = await running(store)
    stopped = Attempt(SONNET, "default", "stopped", "stopped by request")
    ended = await store.finish_run(run.id, OWNER, RunOutcome(
        status, "Once", Usage(120, 1, 100), error="ended early", model=SONNET,
        profile="default", attempts=(stopped,)))
    assert ended is not None
    assert (ended.status, ended.usage, ended.profile) == (status, Usage(120, 1, 100), "default")
    assert await store.list_attempts(run.id) == [stopped]
    session = await store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(120, 1, 100)


async def test_a_limit_of_zero_lists_nothing(store: Store) -> None:
    run = await running(store, "one")
    await finish(store, run, "reply one")
    sid = run.session_id
    assert await store.list_inbound(sid, 0) == []
    assert await store.list_runs(sid, 0) == []
    assert await store.transcript(sid, 0) == []
    assert await store.conversation(sid, 0) == []
    assert await store.list_outbox(sid, 0) == []
    assert len(await store.list_inbound(sid, 1)) == 1
