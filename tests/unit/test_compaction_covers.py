"""What a summary says it stands for: never an entry it did not see."""

from __future__ import annotations

from clawgate.domain import ContextEntry, ModelRef, Role
from clawgate.providers.routing import ProviderEntry, Router, Trail
from clawgate.runtime.compaction import Budget, Summary, summarize, tokens
from clawgate.testing import ManualClock, MemoryStore
from clawgate.testing.scripted import ScriptedProvider

MODEL = ModelRef("scripted", "m1")


def _budget(keep: int) -> Budget:
    return Budget(window=100_000, reserve=1000, prompt=80_000, summary=400, keep=keep,
                  entries=200)


async def _summaries(entries: list[ContextEntry], keep: int) -> tuple[list[Summary], int]:
    provider = ScriptedProvider()
    for n in range(3):
        provider.queue_reply(f"summary {n}")
    router = Router({"scripted": ProviderEntry((("default", provider),))},
                    MemoryStore(clock=ManualClock()), ManualClock())
    made = [s async for s in summarize(router, [MODEL], entries, _budget(keep), Trail())]
    return made, len(provider.calls)


def _conversation() -> list[ContextEntry]:
    """As the store hands it over: the latest summary (written after the turns kept beside
    it, so its seq is higher than theirs), then those turns and the newer ones."""
    kept = [ContextEntry(seq, Role.USER, f"turn {seq} " * 20) for seq in (7, 8, 9, 10)]
    return [ContextEntry(11, Role.NOTE, "what came before", summary=True), *kept,
            ContextEntry(12, Role.USER, "the newest turn")]


async def test_a_summary_covers_only_the_turns_it_was_shown() -> None:
    entries = _conversation()
    keep = tokens(entries[3:])  # turns 9, 10 and 12 are kept verbatim

    made, calls = await _summaries(entries, keep)

    assert calls == 1
    assert [s.covers_through for s in made] == [8]  # not 11: turns 9 and 10 stay in view


async def test_the_previous_summary_alone_is_not_summarised_again() -> None:
    entries = _conversation()
    keep = tokens(entries[1:])  # everything but the summary is kept verbatim

    made, calls = await _summaries(entries, keep)

    assert (made, calls) == ([], 0)  # turns 7 to 10 are not dropped behind a new summary
