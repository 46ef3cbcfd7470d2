"""Compaction: when a conversation outgrows the model's window, older turns become a summary.

The model writes the summary (through the router, so failover applies, but nothing streams
to the user). It is appended to the transcript as a note that stands for every entry up to
the last one it covers; the transcript itself is never shortened. Recent turns stay verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass

from clawgate.domain import ContextEntry, ModelRef, Usage
from clawgate.errors import ContextOverflow
from clawgate.providers.base import ChatMessage, ChatRole, TextDelta, UsageReport
from clawgate.providers.routing import Router, Trail

INSTRUCTION = (
    "Summarize the conversation above for your own later reference. Keep facts, names, "
    "numbers, decisions, open questions and what the user wants; leave out pleasantries. "
    "Write notes, not prose, in at most 300 words."
)
#: Compact when the context would fill more than this share of the window.
FILL_LIMIT = 0.8
#: Keep this share of the window for recent turns, verbatim.
RECENT_SHARE = 0.4


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    covers_through: int
    covered: int  # how many entries it stands for
    usage: Usage


def tokens(entries: list[ContextEntry], system_prompt: str = "") -> int:
    """About how many tokens these entries take (four characters a token, plus framing)."""
    characters = len(system_prompt) + sum(len(e.text) for e in entries)
    return (characters + 3) // 4 + 4 * len(entries)


def needs_compaction(
    entries: list[ContextEntry], system_prompt: str, window: int, reserve: int
) -> bool:
    return tokens(entries, system_prompt) + reserve > window * FILL_LIMIT


def split(entries: list[ContextEntry], keep_tokens: float
          ) -> tuple[list[ContextEntry], list[ContextEntry]]:
    """Older entries to summarise, and recent ones to keep (at least the newest)."""
    budget = keep_tokens
    kept: list[ContextEntry] = []
    for entry in reversed(entries):
        if kept and tokens([*kept, entry]) > budget:
            break
        kept.insert(0, entry)
    older = entries[: len(entries) - len(kept)]
    return older, kept


def only_summaries(entries: list[ContextEntry], keep_tokens: float) -> bool:
    """True when what ``summarize`` would cover is the latest summary alone: nothing was said
    since it that is not kept verbatim, so compacting again would only summarise a summary."""
    older, _ = split(entries, keep_tokens)
    return bool(older) and all(entry.summary for entry in older)


async def summarize(
    router: Router, chain: list[ModelRef], entries: list[ContextEntry], keep_tokens: float,
    window: int, trail: Trail,
) -> Summary | None:
    """A summary of the older part of ``entries``; None when there is nothing to compact."""
    older, kept = split(entries, keep_tokens)
    if not older:
        if tokens(kept) > window:
            raise ContextOverflow("the newest message alone is longer than the model's "
                                  f"context window ({window} tokens)")
        return None
    prompt = [ChatMessage(ChatRole.SYSTEM, e.text) if e.summary else ChatMessage(
        ChatRole.ASSISTANT if e.role.value == "assistant" else ChatRole.USER, e.text)
        for e in older]
    prompt.append(ChatMessage(ChatRole.USER, INSTRUCTION))
    parts: list[str] = []
    usage = Usage()
    async for event in router.stream(chain, tuple(prompt), trail):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, UsageReport):
            usage += event.usage
    return Summary("".join(parts).strip(), older[-1].seq, len(older), usage)
