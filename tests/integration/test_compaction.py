"""Compaction against a real model server: summaries recorded, older turns no longer sent."""

from __future__ import annotations

from clawgate.domain import Role, RunStatus
from clawgate.runtime.compaction import INSTRUCTION
from clawgate.runtime.runner import SUMMARY_PREFIX
from clawgate.runtime.runtime import CommandReply, MessageOutcome, Runtime
from clawgate.testing.model_server import Exchange, Fail, Reply
from tests.integration.model_world import World

LONG = "tell me more about the lighthouse keeper and the storm " * 6  # ~80 tokens


async def _ask(runtime: Runtime, text: str) -> MessageOutcome:
    accepted = await runtime.send("s1", text)
    return await runtime.wait_for(accepted.message.id, within=15)


def _summary_requests(world: World) -> list[Exchange]:
    return [e for e in world.server.exchanges if e.user_texts()[-1:] == [INSTRUCTION]]


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
