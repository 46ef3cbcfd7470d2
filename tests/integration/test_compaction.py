"""Compaction against a real model server: summaries recorded, older turns no longer sent."""

from __future__ import annotations

import itertools

import pytest

from clawgate.domain import Role, RunStatus
from clawgate.runtime.compaction import SUMMARY_REQUEST
from clawgate.runtime.runner import SUMMARY_PREFIX
from clawgate.runtime.runtime import CommandReply, MessageOutcome, Runtime
from clawgate.testing.model_server import Exchange, Fail, Reply
from tests.integration.model_world import World

LONG = "tell me more about the lighthouse keeper and the storm " * 6  # ~80 tokens


async def _ask(runtime: Runtime, text: str) -> MessageOutcome:
    accepted = await runtime.send("s1", text)
    return await runtime.wait_for(accepted.message.id, within=15)


def _summary_requests(world: World) -> list[Exchange]:
    return [e for e in world.server.exchanges if _summarising(e)]


def _summarising(exchange: Exchange) -> bool:
    return exchange.user_texts()[-1].startswith(SUMMARY_REQUEST)


async def test_a_conversation_outgrowing_the_window_is_summarised_and_kept(
    world: World,
) -> None:
    runtime = await world.runtime(window=400)
    for n in range(4):
        outcome = await _ask(runtime, f"{n}: {LONG}")
        assert outcome.run is not None
        assert outcome.run.status is RunStatus.DONE

    [summary_call] = _summary_requests(world)[:1]
    assert summary_call.user_texts()[0].startswith("0: ")
    transcript = await runtime.store.transcript(outcome.message.session_id)
    notes = [e for e in transcript if e.covers_through is not None]
    assert notes
    assert notes[0].role is Role.NOTE
    assert all(e.text for e in transcript)  # nothing was cut from the transcript
    last = world.server.exchanges[-1]  # the turn after the summary
    assert SUMMARY_PREFIX.strip() in last.system_text()
    assert not any(text.startswith("0: ") for text in last.user_texts())
    assert last.user_texts()[-1].startswith("3: ")


async def test_a_context_overflow_from_the_provider_compacts_and_retries_once(
    world: World,
) -> None:
    runtime = await world.runtime()
    await _ask(runtime, "first question")
    await _ask(runtime, "second question")
    world.server.script(Fail(400, "This model's maximum context length is 100 tokens",
                             code="context_length_exceeded"))
    outcome = await _ask(runtime, "third question")
    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    assert len(_summary_requests(world)) == 1
    assert SUMMARY_PREFIX.strip() in world.server.exchanges[-1].system_text()


async def test_compact_on_demand_and_model_switching_in_a_chat(world: World) -> None:
    runtime = await world.runtime(system_prompt="Be brief.")
    await _ask(runtime, "hello")
    await _ask(runtime, "how are you")
    world.server.script(Reply("They greeted each other."))

    reply = await runtime.handle("s1", "/compact")
    assert isinstance(reply, CommandReply)
    assert reply.text.startswith("compacted 3 earlier entries into a summary")
    again = await runtime.handle("s1", "/compact")  # nothing said since: changes nothing
    assert isinstance(again, CommandReply)
    assert again.text == "nothing new to compact since the last summary"
    assert len(_summary_requests(world)) == 1
    switched = await runtime.handle("s1", "/model anthropic/claude-test")
    assert isinstance(switched, CommandReply)
    assert switched.text.startswith("model: anthropic/claude-test")
    await _ask(runtime, "and now?")

    last = world.server.exchanges[-1]
    assert last.api == "anthropic"
    assert last.system_text().startswith("Be brief.")
    assert "They greeted each other." in last.system_text()
    assert last.user_texts()[-1] == "and now?"
    shown = await runtime.handle("s1", "/model")
    assert isinstance(shown, CommandReply)
    assert "model: anthropic/claude-test" in shown.text


@pytest.mark.parametrize(("window", "max_output"), [(8192, 4096), (4096, 2048), (2048, 1024)])
async def test_after_a_compaction_several_turns_pass_before_the_next(
    world: World, window: int, max_output: int,
) -> None:
    # The README's Ollama settings (8192 tokens, 4096 kept for the reply), and smaller: each
    # turn (a question and its echoed answer) takes about an eighth of the window.
    runtime = await world.runtime(window=window, max_output=max_output)
    summarised: list[bool] = []
    for n in range(8):
        before = len(world.server.exchanges)
        outcome = await _ask(runtime, f"{n}: " + "y" * (window // 4))
        assert outcome.run is not None
        assert outcome.run.status is RunStatus.DONE
        summarised.append(any(_summarising(e) for e in world.server.exchanges[before:]))

    assert any(summarised)
    assert sum(summarised) <= 4
    assert not any(a and b for a, b in itertools.pairwise(summarised)), summarised


async def test_no_entry_leaves_the_context_without_being_summarised(world: World) -> None:
    runtime = await world.runtime(context_entries=4)
    for n in range(6):
        await _ask(runtime, f"fact {n}")

    replies = [e for e in world.server.exchanges if not _summarising(e)]
    assert all(len(e.body["messages"]) <= 5 for e in replies)  # a summary and four entries
    summarised = " ".join(" ".join(e.user_texts()) for e in _summary_requests(world))
    sent_last = " ".join(replies[-1].user_texts())
    for n in range(6):
        assert f"fact {n}" in summarised or f"fact {n}" in sent_last, n
    assert SUMMARY_PREFIX.strip() in replies[-1].system_text()


def _estimate(exchange: Exchange) -> int:
    """About how many tokens a request may fill: its messages, and the reply it allows."""
    characters = sum(len(str(m["content"])) for m in exchange.body["messages"])
    return characters // 4 + int(exchange.body.get("max_tokens", 0))


async def test_a_long_chat_moved_to_a_small_window_is_summarised_in_pieces_that_fit(
    world: World,
) -> None:
    roomy = await world.runtime()
    for n in range(8):
        await _ask(roomy, f"{n}: {LONG * 4}")  # about 330 tokens each way
    await roomy.close(grace=0)
    await roomy.store.close()
    world.runtimes.remove(roomy)
    before = len(world.server.exchanges)

    small = await world.runtime(window=2048, max_output=512)
    outcome = await _ask(small, f"8: {LONG}")

    assert outcome.run is not None
    assert outcome.run.status is RunStatus.DONE
    sent = world.server.exchanges[before:]
    assert len([e for e in sent if _summarising(e)]) >= 2
    assert all(_estimate(e) <= 2048 for e in sent), [_estimate(e) for e in sent]
    assert any(text.startswith("0: ") for text in sent[0].user_texts())  # from the start
    assert sent[-1].user_texts()[-1].startswith("8: ")


async def test_a_system_prompt_too_long_for_the_window_fails_the_turn_saying_so(
    world: World,
) -> None:
    runtime = await world.runtime(window=1024, max_output=256, system_prompt="x" * 4000)
    outcome = await _ask(runtime, "hello")

    assert outcome.run is not None
    assert outcome.run.status is RunStatus.FAILED
    assert "leaves no room for the conversation" in (outcome.run.error or "")
    assert world.server.exchanges == []
