"""Runs against real HTTP servers: streaming, retries, failover, cooldowns, stop and timeouts.

The runtime talks through the official SDKs to a server on 127.0.0.1 that speaks the OpenAI
and Anthropic wire formats; the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from clawgate.domain import Role, RunStatus, Usage
from clawgate.providers.base import estimate_tokens
from clawgate.runtime.bus import ReplyDelta, Subscription
from clawgate.runtime.runtime import MessageOutcome, Runtime
from clawgate.testing.model_server import (
    Exchange,
    Fail,
    Hang,
    Malformed,
    Reply,
    Reset,
    StreamError,
)
from tests.integration.model_world import (
    CLAUDE,
    CLAUDE_KEY,
    GPT,
    GPT_OTHER,
    HOME,
    WORK,
    World,
)


async def _ask(runtime: Runtime, text: str = "hello") -> MessageOutcome:
    accepted = await runtime.send("s1", text)
    return await runtime.wait_for(accepted.message.id, within=15)


async def _attempts(runtime: Runtime, outcome: MessageOutcome) -> list[tuple[str, str, str]]:
    assert outcome.run is not None
    tried = await runtime.store.list_attempts(outcome.run.id)
    return [(str(a.model), a.profile, a.outcome) for a in tried]


async def _closed(exchange: Exchange) -> None:
    await asyncio.wait_for(exchange.closed_by_client.wait(), 3)


def _estimate(exchange: Exchange, streamed: str) -> Usage:
    """The tokens clawgate estimates for a call the provider never reported."""
    sent = sum(estimate_tokens(m["content"]) for m in exchange.body["messages"])
    return Usage(sent, estimate_tokens(streamed))


async def _usage_of(runtime: Runtime, outcome: MessageOutcome) -> tuple[Usage, Usage]:
    """The tokens recorded on the run, and on its session."""
    session = await runtime.store.get_session("s1")
    assert outcome.run is not None
    assert session is not None
    return outcome.run.usage, session.usage


async def test_a_streamed_reply_is_recorded_with_who_answered_and_the_usage(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.script(Reply("Hello there", input_tokens=50, output_tokens=3, cached_tokens=40))
    outcome = await _ask(runtime)
    assert outcome.reply == "Hello there"
    assert outcome.run is not None
    assert (outcome.run.model, outcome.run.profile) == (GPT, "work")
    assert outcome.run.usage == Usage(50, 3, 40)
    assert await _attempts(runtime, outcome) == [("openai/gpt-test", "work", "answered")]
    session = await runtime.store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(50, 3, 40)


async def test_a_rate_limited_profile_rests_and_the_next_profile_answers(world: World) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(429, "slow down", retry_after=30))
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert outcome.run.profile == "home"
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "rate_limited"), ("openai/gpt-test", "home", "answered")]
    [cooldown] = await runtime.store.cooldowns()
    assert cooldown.profile_key == "openai:work"
    assert cooldown.until == world.clock.now() + timedelta(seconds=30)


async def test_an_overload_rests_the_profile_briefly_at_first_then_longer(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(529, "Overloaded"))
    assert (await _ask(runtime)).reply == "reply to: hello"  # home answered meanwhile
    [first] = await runtime.store.cooldowns()
    assert (first.profile_key, first.until) == (
        "openai:work", world.clock.now() + timedelta(seconds=10))
    world.clock.advance(11)
    await _ask(runtime, "again")
    [second] = await runtime.store.cooldowns()
    assert second.until == world.clock.now() + timedelta(seconds=30)


async def test_a_rate_limit_rests_only_that_model_and_another_model_s_answer_keeps_it(
    world: World,
) -> None:
    runtime = await world.runtime(fallbacks=(GPT_OTHER, CLAUDE))
    world.server.on_model("gpt-test", Fail(429, "slow down", retry_after=60))
    first = await _ask(runtime)
    assert first.run is not None
    assert (first.run.model, first.run.profile) == (GPT_OTHER, "work")  # the same key

    again = await _ask(runtime, "again")
    assert await _attempts(runtime, again) == [
        ("openai/gpt-test", "work", "cooling_down"), ("openai/gpt-test", "home", "cooling_down"),
        ("openai/gpt-other", "work", "answered")]
    assert len(world.server.requests_for("gpt-test")) == 2  # not called again while it rests
    rests = await runtime.router.cooldowns()
    assert {(c.profile_key, c.model) for c in rests} == {
        ("openai:work", "gpt-test"), ("openai:home", "gpt-test")}
    assert {c.until for c in rests} == {world.clock.now() + timedelta(seconds=60)}


async def test_a_retry_after_date_without_a_zone_rests_the_key_and_the_next_one_answers(
    world: World,
) -> None:
    runtime = await world.runtime()
    in_45s = world.clock.now() + timedelta(seconds=45)
    world.server.on_key(WORK, Fail(429, "slow down",
                                   retry_after=in_45s.strftime("%a, %d %b %Y %H:%M:%S")))
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "rate_limited"), ("openai/gpt-test", "home", "answered")]
    [cooldown] = await runtime.store.cooldowns()
    assert (cooldown.profile_key, cooldown.until) == ("openai:work", in_45s)


async def test_a_temporary_quota_429_rests_only_that_model_for_the_wait_it_asks(
    world: World,
) -> None:
    runtime = await world.runtime(fallbacks=(GPT_OTHER, CLAUDE))
    world.server.on_model("gpt-test", Fail(429, retry_after=30, body={"error": {
        "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
        "status": "RESOURCE_EXHAUSTED"}}))  # as Gemini answers
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert (outcome.run.model, outcome.run.profile) == (GPT_OTHER, "work")  # the same key
    rests = await runtime.router.cooldowns()
    assert {(c.profile_key, c.model, c.until) for c in rests} == {
        ("openai:work", "gpt-test", world.clock.now() + timedelta(seconds=30)),
        ("openai:home", "gpt-test", world.clock.now() + timedelta(seconds=30))}


async def test_a_refused_key_rests_for_every_model_from_the_same_turn_on(world: World) -> None:
    runtime = await world.runtime(fallbacks=(GPT_OTHER, CLAUDE))
    world.server.on_key(WORK, Fail(401, "bad key"))
    world.server.on_key(HOME, Fail(401, "bad key"))
    outcome = await _ask(runtime)
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "auth"), ("openai/gpt-test", "home", "auth"),
        ("openai/gpt-other", "work", "cooling_down"), ("openai/gpt-other", "home", "cooling_down"),
        ("anthropic/claude-test", "default", "answered")]
    assert [e.model for e in world.server.exchanges] == ["gpt-test", "gpt-test", "claude-test"]
    assert {(c.profile_key, c.model) for c in await runtime.router.cooldowns()} == {
        ("openai:work", None), ("openai:home", None)}


async def test_a_refused_key_s_rest_ends_once_the_key_is_changed(world: World) -> None:
    first = await world.runtime(fallbacks=())
    world.server.on_key(WORK, Fail(401, "bad key"))
    world.server.on_key(HOME, Fail(401, "bad key"))
    await _ask(first)  # both keys are refused: both rest
    await first.close(grace=0)

    fixed = "sk-work-new-4444444444"
    second = await world.runtime(fallbacks=(), work_key=fixed)  # the user set a new key
    assert [c.profile_key for c in await second.router.cooldowns()] == ["openai:home"]
    outcome = await _ask(second, "with the new key")
    assert outcome.reply == "reply to: with the new key"
    assert await _attempts(second, outcome) == [("openai/gpt-test", "work", "answered")]
    assert world.server.exchanges[-1].api_key == fixed
    assert [c.profile_key for c in await second.store.cooldowns()] == ["openai:home"]


async def test_an_answer_forgives_its_own_model_and_key_but_not_another_model(
    world: World,
) -> None:
    runtime = await world.runtime(fallbacks=(GPT_OTHER, CLAUDE))
    world.server.on_model("gpt-other", Fail(429, "slow down", retry_after=60))
    world.server.on_model("gpt-test", Fail(429, "slow down", retry_after=30))
    await _ask(runtime)  # both models rest on both keys; claude answers
    world.clock.advance(31)  # gpt-test's rest is over, gpt-other's is not
    world.server.on_model("gpt-test", Reply("back"))
    assert (await _ask(runtime, "again")).reply == "back"
    rests = await runtime.router.cooldowns()
    assert {(c.profile_key, c.model) for c in rests} == {
        ("openai:work", "gpt-other"), ("openai:home", "gpt-other")}


async def test_refused_keys_fail_over_to_the_next_model(world: World) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(401, "bad key"))
    world.server.on_key(HOME, Fail(401, "bad key"))
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert (outcome.run.model, outcome.run.status) == (CLAUDE, RunStatus.DONE)
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "auth"), ("openai/gpt-test", "home", "auth"),
        ("anthropic/claude-test", "default", "answered")]


async def test_when_no_candidate_answers_the_run_says_why_for_each(world: World) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(401, "bad key"))
    world.server.on_key(HOME, Fail(429, "slow down", retry_after=600))
    world.server.on_key(CLAUDE_KEY, Fail(500, "upstream broke"))
    first = await _ask(runtime)
    assert first.run is not None
    assert first.run.error == (
        "all 3 candidates failed: "
        "openai/gpt-test via work: bad key (HTTP 401); "
        "openai/gpt-test via home: slow down (HTTP 429) (retry after 600s); "
        "anthropic/claude-test: upstream broke (HTTP 500)")

    again = await _ask(runtime, "again")  # both keys rest now
    assert again.run is not None
    back = [(world.clock.now() + timedelta(seconds=s)).strftime("%H:%M:%S") for s in (60, 600)]
    assert again.run.error == (
        "all 3 candidates failed: "
        f"openai/gpt-test via work: resting until {back[0]} UTC (auth: openai: bad key (HTTP "
        f"401)); openai/gpt-test via home: resting until {back[1]} UTC (rate_limited: openai: "
        "slow down (HTTP 429) (retry after 600s)); "
        "anthropic/claude-test: upstream broke (HTTP 500)")


async def test_a_server_error_then_success_is_retried_on_the_same_profile(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.script(Fail(500, "oops"), Reply("second time lucky"))
    outcome = await _ask(runtime)
    assert outcome.reply == "second time lucky"
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "unavailable"), ("openai/gpt-test", "work", "answered")]
    assert len(world.server.exchanges) == 2
    assert await runtime.store.cooldowns() == []


async def test_a_short_retry_after_is_waited_out_and_the_same_key_answers(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.script(Fail(429, "Please try again in 150ms.", retry_after=0.15))
    outcome = await _ask(runtime)
    assert outcome.reply == "reply to: hello"
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "rate_limited"), ("openai/gpt-test", "work", "answered")]
    assert [e.api_key for e in world.server.exchanges] == [WORK, WORK]
    assert await runtime.store.cooldowns() == []  # nothing rests: the next turn is served
    assert (await _ask(runtime, "again")).reply == "reply to: again"


async def test_waiting_out_retry_after_counts_as_a_retry_then_the_key_rests(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(429, "Please try again in 10ms.", retry_after=0.01))
    outcome = await _ask(runtime)
    assert await _attempts(runtime, outcome) == [
        *[("openai/gpt-test", "work", "rate_limited")] * 3,  # two retries, as configured
        ("openai/gpt-test", "home", "answered")]
    [rest] = await runtime.store.cooldowns()
    assert (rest.profile_key, rest.model) == ("openai:work", "gpt-test")


@pytest.mark.parametrize(("retry_after", "run_timeout_s"), [(20, 600), (3, 2)])
async def test_a_retry_after_too_long_or_past_the_deadline_is_not_waited_for(
    world: World, retry_after: float, run_timeout_s: float
) -> None:
    runtime = await world.runtime(run_timeout_s=run_timeout_s)
    world.server.script(Fail(429, "slow down", retry_after=retry_after))
    outcome = await _ask(runtime)
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "rate_limited"), ("openai/gpt-test", "home", "answered")]


@pytest.mark.parametrize("end", [RunStatus.KILLED, RunStatus.TIMEOUT])
async def test_stop_and_timeout_end_the_run_at_once_while_it_waits_out_a_retry_after(
    world: World, end: RunStatus
) -> None:
    runtime = await world.runtime(run_timeout_s=10)
    world.server.script(Fail(429, "Please try again in 4s.", retry_after=4))
    accepted = await runtime.send("s1", "hello")
    await _until(lambda: any(e.completed.is_set() for e in world.server.exchanges))
    await asyncio.sleep(0.3)  # moving on to the next key would have happened by now
    assert len(world.server.exchanges) == 1  # it waits instead
    await _end(runtime, world, end)
    outcome = await runtime.wait_for(accepted.message.id, within=2)  # well before the 4 s
    assert outcome.run is not None
    assert outcome.run.status is end
    assert len(world.server.exchanges) == 1


async def test_a_model_that_keeps_failing_gives_way_to_the_fallback(world: World) -> None:
    runtime = await world.runtime()
    world.server.on_model("gpt-test", Fail(502, "bad gateway"))
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert outcome.run.model == CLAUDE
    outcomes = [o for _, _, o in await _attempts(runtime, outcome)]
    assert outcomes == ["unavailable"] * 6 + ["answered"]  # 3 tries of each profile


async def test_an_overloaded_error_inside_an_anthropic_stream_rests_it_and_fails_over(
    world: World,
) -> None:
    runtime = await world.runtime(fallbacks=(GPT,))
    await runtime.set_model("s1", CLAUDE)
    world.server.on_model("claude-test", StreamError("overloaded_error", "Overloaded"))
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert (outcome.run.status, outcome.run.model) == (RunStatus.DONE, GPT)
    assert await _attempts(runtime, outcome) == [
        ("anthropic/claude-test", "default", "overloaded"),
        ("openai/gpt-test", "work", "answered")]
    [tried, _] = await runtime.store.list_attempts(outcome.run.id)
    assert "Overloaded" in (tried.error or "")
    assert "HTTP 200" not in (tried.error or "")
    [cooldown] = await runtime.store.cooldowns()
    assert cooldown.profile_key == "anthropic:default"


async def test_an_api_error_inside_an_anthropic_stream_is_retried(world: World) -> None:
    runtime = await world.runtime()
    await runtime.set_model("s1", CLAUDE)
    world.server.script(StreamError("api_error", "Internal server error"), Reply("fine now"))
    outcome = await _ask(runtime)
    assert outcome.reply == "fine now"
    assert await _attempts(runtime, outcome) == [
        ("anthropic/claude-test", "default", "unavailable"),
        ("anthropic/claude-test", "default", "answered")]


async def test_stop_while_the_model_hangs_ends_the_run_and_hangs_up(world: World) -> None:
    runtime = await world.runtime()
    world.server.script(Hang())
    accepted = await runtime.send("s1", "hello")
    await _until(lambda: bool(world.server.exchanges))
    started = time.monotonic()
    report = await runtime.stop("s1")
    assert time.monotonic() - started < 1.0
    assert report.final is not None
    assert report.final.status is RunStatus.KILLED
    await _closed(world.server.exchanges[0])
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    assert len(world.server.exchanges) == 1  # a stop is never failed over
    assert await _attempts(runtime, outcome) == [("openai/gpt-test", "work", "stopped")]


async def test_stop_mid_stream_keeps_the_partial_reply_marked_as_stopped(world: World) -> None:
    runtime = await world.runtime()
    world.server.script(Hang(("Once", " upon")))
    deltas = runtime.subscribe("s1")
    accepted = await runtime.send("s1", "tell me a story")
    seen = ""
    while seen != "Once upon":
        event = await asyncio.wait_for(deltas.get(), 5)
        if isinstance(event, ReplyDelta):
            seen += event.text
    await runtime.stop("s1")
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    await _closed(world.server.exchanges[0])
    assert outcome.reply == "Once upon"
    entries = await runtime.store.transcript(outcome.message.session_id)
    assert (entries[-1].role, entries[-1].stopped) == (Role.ASSISTANT, True)


async def test_a_run_stopped_after_a_failover_names_the_profile_that_was_streaming(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.on_key(WORK, Fail(429, "slow down", retry_after=30))
    world.server.on_key(HOME, Hang(("Once",)))
    deltas = runtime.subscribe("s1")
    accepted = await runtime.send("s1", "tell me a story")
    await _first_text(deltas)
    await runtime.stop("s1")
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    assert outcome.run is not None
    assert (outcome.run.status, outcome.run.model, outcome.run.profile) == (
        RunStatus.KILLED, GPT, "home")
    assert await _attempts(runtime, outcome) == [
        ("openai/gpt-test", "work", "rate_limited"), ("openai/gpt-test", "home", "stopped")]


async def test_input_tokens_reported_before_a_stop_count_on_the_run_and_session(
    world: World,
) -> None:
    runtime = await world.runtime()
    await runtime.set_model("s1", CLAUDE)
    world.server.script(Hang(("Once",), input_tokens=120))
    deltas = runtime.subscribe("s1")
    accepted = await runtime.send("s1", "tell me a story")
    await _first_text(deltas)
    await runtime.stop("s1")
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.KILLED
    assert outcome.run.usage == Usage(120, 1)  # message_start: the input, one output token
    session = await runtime.store.get_session("s1")
    assert session is not None
    assert session.usage == Usage(120, 1)


@pytest.mark.parametrize("end", [RunStatus.KILLED, RunStatus.TIMEOUT])
async def test_an_openai_stream_cut_short_counts_estimated_tokens_on_the_run_and_session(
    world: World, end: RunStatus
) -> None:
    runtime = await world.runtime(run_timeout_s=10)
    world.server.script(Hang(("Once", " upon")))  # usage would only come in the last chunk
    deltas = runtime.subscribe("s1")
    accepted = await runtime.send("s1", "tell me a long story " + "z" * 4000)
    seen = ""
    while seen != "Once upon":
        event = await asyncio.wait_for(deltas.get(), 5)
        if isinstance(event, ReplyDelta):
            seen += event.text
    await _end(runtime, world, end)
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    assert outcome.run is not None
    assert outcome.run.status is end
    estimate = _estimate(world.server.exchanges[0], "Once upon")
    assert estimate.input_tokens > 1000
    assert await _usage_of(runtime, outcome) == (estimate, estimate)


async def test_a_reply_from_a_server_that_never_reports_usage_counts_an_estimate(
    world: World,
) -> None:
    runtime = await world.runtime()
    world.server.script(Fail(500, "oops"), Reply("all good here", reports_usage=False))
    outcome = await _ask(runtime)
    estimate = _estimate(world.server.exchanges[1], "all good here")
    assert await _usage_of(runtime, outcome) == (estimate, estimate)  # the 500 cost nothing


async def test_tokens_spent_compacting_count_on_a_run_that_then_fails(world: World) -> None:
    runtime = await world.runtime()
    await _ask(runtime, "first question")
    await _ask(runtime, "second question")
    session = await runtime.store.get_session("s1")
    assert session is not None
    world.server.script(
        Fail(400, "This model's maximum context length is 100 tokens",
             code="context_length_exceeded"),
        Reply("the summary", input_tokens=90, output_tokens=12),
        Fail(400, "unknown parameter"),
    )
    outcome = await _ask(runtime, "third question")
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.FAILED
    assert outcome.run.usage == Usage(90, 12)
    after = await runtime.store.get_session("s1")
    assert after is not None
    assert after.usage == session.usage + Usage(90, 12)


async def test_the_run_timeout_ends_a_hanging_run_and_hangs_up(world: World) -> None:
    # The deadline comes before the lease (15 s) runs out: a jump past both would let a
    # background recovery end the run "interrupted" first, as it should for a stalled owner.
    runtime = await world.runtime(run_timeout_s=10)
    world.server.script(Hang(("Thinking",)))
    accepted = await runtime.send("s1", "hello")
    await _until(lambda: bool(world.server.exchanges))
    world.clock.advance(11)
    await runtime.tick()
    outcome = await runtime.wait_for(accepted.message.id, within=5)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.TIMEOUT
    assert await _attempts(runtime, outcome) == [("openai/gpt-test", "work", "run_timeout")]
    await _closed(world.server.exchanges[0])


async def test_a_silent_provider_times_out_and_the_fallback_answers(world: World) -> None:
    runtime = await world.runtime(timeout_s=0.5)
    world.server.on_model("gpt-test", Hang())
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert outcome.run.model == CLAUDE
    assert [o for _, _, o in await _attempts(runtime, outcome)] == [
        "timeout", "timeout", "answered"]
    for exchange in world.server.requests_for("gpt-test"):
        await _closed(exchange)


@pytest.mark.parametrize("broken", [Malformed(("Hal",)), Reset(("Hal",))])
async def test_a_stream_that_breaks_after_text_fails_the_run_and_keeps_the_text(
    world: World, broken: Malformed | Reset
) -> None:
    runtime = await world.runtime()
    world.server.script(broken)
    outcome = await _ask(runtime)
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.FAILED
    assert outcome.reply == "Hal"
    assert len(world.server.exchanges) == 1  # text was shown: no retry, no failover
    assert [o for _, _, o in await _attempts(runtime, outcome)] == ["unavailable"]
    estimate = _estimate(world.server.exchanges[0], "Hal")  # no usage chunk came: estimated
    assert await _usage_of(runtime, outcome) == (estimate, estimate)


async def test_a_cooldown_survives_a_restart(world: World) -> None:
    first = await world.runtime()
    world.server.on_key(WORK, Fail(429, "slow down", retry_after=600))
    await _ask(first)
    await first.close(grace=0)
    world.server.on_key(WORK, Reply("the rested key was used"))

    second = await world.runtime()
    outcome = await _ask(second, "again")

    assert outcome.run is not None
    assert outcome.run.profile == "home"
    assert await _attempts(second, outcome) == [
        ("openai/gpt-test", "work", "cooling_down"), ("openai/gpt-test", "home", "answered")]
    keys = [e.api_key for e in world.server.exchanges]
    assert keys == [WORK, HOME, HOME]


async def test_every_candidate_resting_fails_fast_and_says_until_when(world: World) -> None:
    runtime = await world.runtime()
    for key in (WORK, HOME, CLAUDE_KEY):
        world.server.on_key(key, Fail(429, "slow down", retry_after=120))
    await _ask(runtime)
    calls = len(world.server.exchanges)
    outcome = await _ask(runtime, "again")
    assert outcome.run is not None
    assert "resting after failures" in (outcome.run.error or "")
    assert ("`clawgate models test openai/gpt-test` tries it now and clears the rest if it "
            "answers") in (outcome.run.error or "")
    assert len(world.server.exchanges) == calls


async def _end(runtime: Runtime, world: World, end: RunStatus) -> None:
    """Stop the run in progress, or let its deadline (10 s, within the lease) pass."""
    if end is RunStatus.KILLED:
        await runtime.stop("s1")
    else:
        world.clock.advance(10)
        await runtime.tick()


async def _first_text(events: Subscription) -> None:
    while not isinstance(await asyncio.wait_for(events.get(), 5), ReplyDelta):
        pass


async def _until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)

