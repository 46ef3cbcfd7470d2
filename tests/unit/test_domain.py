"""The pure rules: transitions, queue planning, debounce, names and input checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawgate.domain import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Attempt,
    DropPolicy,
    DropReason,
    ModelRef,
    NewInbound,
    QueueMode,
    QueuePatch,
    QueueSettings,
    RunOutcome,
    RunStatus,
    Usage,
    can_transition,
    check_inbound,
    check_key,
    debounce_until,
    merge_patch,
    plan_claim,
    plan_overflow,
    summary_note,
)
from clawgate.errors import InvalidInput

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_terminal_statuses_are_final_and_reachable_only_forward() -> None:
    for status in TERMINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
    assert not any(can_transition(s, RunStatus.QUEUED) for s in RunStatus)
    assert not can_transition(RunStatus.DONE, RunStatus.RUNNING)
    assert set(TRANSITIONS) == set(RunStatus)
    assert {RunStatus.QUEUED, RunStatus.RUNNING} == ACTIVE_STATUSES


def test_a_queued_run_cannot_finish_done_or_time_out() -> None:
    assert not can_transition(RunStatus.QUEUED, RunStatus.DONE)
    assert not can_transition(RunStatus.QUEUED, RunStatus.TIMEOUT)


def test_an_outcome_must_be_terminal() -> None:
    with pytest.raises(ValueError, match="terminal"):
        RunOutcome(RunStatus.RUNNING)


@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=8, unique=True),
       st.sampled_from(list(QueueMode)))
def test_a_claim_decides_every_waiting_message_at_most_once(
    pending: list[str], mode: QueueMode
) -> None:
    plan = plan_claim(mode, pending)
    decided = [plan.answered, *plan.merged, *plan.dropped]
    assert len(decided) == len(set(decided))
    assert set(decided) <= set(pending)
    if mode is QueueMode.COLLECT:
        assert decided == pending
    if mode is QueueMode.INTERRUPT:
        assert plan.answered == pending[-1]
        assert set(plan.dropped) == set(pending[:-1])
    if mode in (QueueMode.FOLLOWUP, QueueMode.STEER):
        assert (plan.answered, plan.merged, plan.dropped) == (pending[0], (), ())


@given(st.integers(0, 50), st.integers(1, 20), st.sampled_from(list(DropPolicy)))
def test_overflow_keeps_the_queue_within_its_cap(
    pending: int, cap: int, policy: DropPolicy
) -> None:
    plan = plan_overflow(pending, QueueSettings(cap=cap, drop=policy))
    after = pending + (0 if plan.drop_new else 1) - plan.drop_oldest
    assert after <= max(cap, pending)  # never grows a queue that is already at its cap
    if pending < cap:
        assert (plan.drop_oldest, plan.drop_new) == (0, False)
    elif policy is DropPolicy.NEW:  # the newcomer goes; older messages keep their place
        assert (after, plan.drop_oldest) == (pending, 0)
    else:  # the oldest go, down to the cap (a lowered cap takes effect at once)
        assert after == cap
    if pending >= cap:
        assert plan.reason is not None


def test_overflow_reasons_follow_the_policy() -> None:
    full = 3
    assert plan_overflow(full, QueueSettings(cap=3, drop=DropPolicy.NEW)).reason is (
        DropReason.QUEUE_FULL_NEWEST)
    assert plan_overflow(full, QueueSettings(cap=3, drop=DropPolicy.OLD)).reason is (
        DropReason.QUEUE_FULL_OLDEST)
    assert plan_overflow(full, QueueSettings(cap=3, drop=DropPolicy.SUMMARIZE)).reason is (
        DropReason.QUEUE_FULL_SUMMARIZED)


@pytest.mark.parametrize("policy", list(DropPolicy))
def test_in_interrupt_mode_a_full_queue_keeps_the_newest_whatever_the_policy(
    policy: DropPolicy,
) -> None:
    interrupt = QueueSettings(mode=QueueMode.INTERRUPT, cap=3, drop=policy)
    plan = plan_overflow(3, interrupt)
    assert (plan.drop_new, plan.drop_oldest, plan.reason) == (
        False, 1, DropReason.SUPERSEDED)  # the newest is the one answered


def _ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def test_debounce_waits_for_quiet_after_messages_that_queued_behind_a_run() -> None:
    collect = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=500)
    behind = [T0, T0 + _ms(100)]  # the run ended at T0 + 150 ms
    assert debounce_until(collect, behind, T0 + _ms(150), T0 + _ms(200)) == T0 + _ms(600)
    assert debounce_until(collect, behind, T0 + _ms(150), T0 + _ms(700)) is None
    interrupt = QueueSettings(mode=QueueMode.INTERRUPT, debounce_ms=500)
    assert debounce_until(interrupt, behind, T0 + _ms(150), T0) is None
    assert debounce_until(QueueSettings(debounce_ms=0), behind, T0 + _ms(150), T0) is None


def test_a_message_to_an_idle_session_does_not_wait() -> None:
    collect = QueueSettings(mode=QueueMode.COLLECT, debounce_ms=500)
    assert debounce_until(collect, [T0], None, T0) is None  # no run yet
    earlier_run_ended = T0 - timedelta(seconds=1)
    assert debounce_until(collect, [T0], earlier_run_ended, T0) is None
    assert debounce_until(collect, [T0], T0, T0) is None  # not before the end: idle


def test_queue_settings_refuse_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="cap"):
        QueueSettings(cap=0)
    with pytest.raises(ValueError, match="debounce"):
        QueueSettings(debounce_ms=-1)


def test_a_patch_changes_only_the_fields_it_names() -> None:
    merged = merge_patch(QueuePatch(mode=QueueMode.STEER, cap=4), QueuePatch(debounce_ms=0))
    assert merged == QueuePatch(mode=QueueMode.STEER, debounce_ms=0, cap=4)


def test_model_references_are_provider_slash_model() -> None:
    assert ModelRef.parse(" openai/gpt-4o ") == ModelRef("openai", "gpt-4o")
    assert str(ModelRef.parse("ollama/llama3:8b")) == "ollama/llama3:8b"
    assert ModelRef.parse("openrouter/meta/llama") == ModelRef("openrouter", "meta/llama")
    for bad in ("gpt-4o", "/x", "x/", ""):
        with pytest.raises(ValueError, match="provider/model"):
            ModelRef.parse(bad)
    for odd in ("echo/x\x00y", "echo/two words", "echo/tab\there", "echo/" + "m" * 300):
        with pytest.raises(ValueError, match="printable characters without spaces"):
            ModelRef.parse(odd)


def test_session_keys_are_checked() -> None:
    assert check_key("telegram:12345") == "telegram:12345"
    with pytest.raises(InvalidInput, match="not allowed: ' '"):
        check_key("two words")
    with pytest.raises(InvalidInput, match="1 to 128"):
        check_key("")


def test_messages_are_checked() -> None:
    ok = NewInbound(channel="cli", text="hi")
    assert check_inbound(ok) is ok
    with pytest.raises(InvalidInput, match="channel message id"):
        check_inbound(NewInbound(channel="cli", text="hi", channel_message_id=""))
    with pytest.raises(InvalidInput, match="channel name"):
        check_inbound(NewInbound(channel="", text="hi"))


def test_text_that_utf8_cannot_encode_is_refused() -> None:
    """JSON may carry a lone surrogate (``"\\ud800"``); no store could keep it."""
    assert check_inbound(NewInbound(channel="cli", text="héllo 👋")).text == "héllo 👋"
    with pytest.raises(InvalidInput, match=r"message is not valid Unicode.*position 3"):
        check_inbound(NewInbound(channel="cli", text="hi \ud800"))
    with pytest.raises(InvalidInput, match="sender is not valid Unicode"):
        check_inbound(NewInbound(channel="cli", text="hi", sender="\udfff bob"))


def test_the_summary_note_names_what_was_dropped() -> None:
    note = summary_note(["buy milk", "and " + "eggs " * 40])
    assert note.startswith("[2 earlier messages were dropped from a full queue: buy milk; and")
    assert note.endswith("…]")


def test_an_outcome_names_the_candidate_last_in_use() -> None:
    gpt, claude = ModelRef("openai", "gpt"), ModelRef("anthropic", "claude")
    killed = RunOutcome(RunStatus.KILLED)
    steered = [Attempt(gpt, "work", "answered"), Attempt(claude, "default", "stopped")]
    assert killed.with_trail(steered, Usage(5, 1)).profile == "default"
    failed = RunOutcome(RunStatus.FAILED, error="no")
    tried = [Attempt(gpt, "work", "auth"), Attempt(gpt, "home", "cooling_down")]
    assert (failed.with_trail(tried, Usage()).model,
            failed.with_trail(tried, Usage()).profile) == (gpt, "work")
    assert failed.with_trail([], Usage()).profile is None
