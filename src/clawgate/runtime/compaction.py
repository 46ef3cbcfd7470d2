"""Compaction: when a conversation outgrows the model's window, older turns become a summary.

The model writes the summary (through the router, so failover applies, but nothing streams
to the user). It is appended to the transcript as a note that stands for every entry up to
the last one it covers; the transcript itself is never shortened. Recent turns stay verbatim.

A conversation is compacted when it would fill more of the window than its ``Budget``
allows, or when more entries have been added since the last summary than a model call may
see (``[runtime] context_entries``): no entry leaves the context without being summarised.
Older turns too long for one summarising call are summarised a piece at a time, each
summary building on the one before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from clawgate.domain import MAX_QUEUE_CAP, ContextEntry, ModelRef, Role, Usage
from clawgate.errors import ContextOverflow
from clawgate.providers.base import ChatMessage, ChatRole, TextDelta, UsageReport
from clawgate.providers.routing import Router, Trail

#: How every summarising request begins (the word limit follows, from the budget).
SUMMARY_REQUEST = "Summarize the conversation above for your own later reference."
#: The conversation sent, with the reply's reservation, fills at most this share of the
#: window; the rest absorbs the error of estimating tokens from characters.
FILL_LIMIT = 0.8
#: A summary is asked to stay within this many tokens (less when the window is small).
SUMMARY_TOKENS = 400
#: Entries read beyond ``context_entries``: more than one model call can add (its reply and
#: a full queue of messages), so compaction sees every entry before a summary covers it.
READ_AHEAD = MAX_QUEUE_CAP + 2


@dataclass(frozen=True, slots=True)
class Summary:
    text: str
    covers_through: int
    covered: int  # how many entries it stands for
    usage: Usage


@dataclass(frozen=True, slots=True)
class Budget:
    """How a model's window is shared out, in estimated tokens (see ``tokens``).

    Of what the system prompt leaves, a summary takes at most a quarter; the recent turns
    kept verbatim take a third of the rest, so after compacting two thirds of it are free and
    the next compaction comes only after that much more has been said.
    """

    window: int
    reserve: int  # kept for a reply
    prompt: int  # the conversation sent may take this much, system prompt included
    summary: int  # what a summary may take
    keep: int  # recent turns kept verbatim when compacting
    entries: int  # at most this many entries since the last summary are sent

    @property
    def words(self) -> int:
        """The summary's length as the model is asked for it (three words make 4 tokens)."""
        return max(1, self.summary * 3 // 4)

    @property
    def piece(self) -> int:
        """What one summarising call may be given besides the summary before it: its reply
        is a summary, so it needs less room than a whole reply."""
        return (int(self.window * FILL_LIMIT) - min(self.reserve, 2 * self.summary)
                - self.summary - tokens([], instruction(self.words)))

    def summary_output(self, prompt: int) -> int:
        """The output limit of a summarising call whose prompt takes ``prompt`` tokens."""
        room = int(self.window * FILL_LIMIT) - prompt
        return min(self.reserve, max(2 * self.summary, room))


def budget(window: int, reserve: int, system_prompt: str, entries: int) -> Budget:
    """Share out ``window`` with ``reserve`` tokens kept for the reply."""
    prompt = int(window * FILL_LIMIT) - reserve
    room = prompt - tokens([], system_prompt)
    summary = min(SUMMARY_TOKENS, room // 4)
    keep = (room - summary) // 3
    if summary < 1 or keep < 1:
        raise ContextOverflow(
            f"the model's context window ({window} tokens) leaves no room for the "
            f"conversation: {reserve} are reserved for the reply (max_output_tokens), the "
            f"system prompt takes about {tokens([], system_prompt)}, and clawgate fills at "
            f"most {FILL_LIMIT:.0%} of the window")
    return Budget(window, reserve, prompt, summary, keep, entries)


def for_model(router: Router, model: ModelRef, system_prompt: str, entries: int) -> Budget:
    """The budget of a configured model."""
    return budget(router.window(model), router.output_limit(model), system_prompt, entries)


def reading(context_entries: int) -> int:
    """How many entries to read so that compaction sees all those not yet summarised."""
    return context_entries + READ_AHEAD


def instruction(words: int) -> str:
    return (f"{SUMMARY_REQUEST} Keep facts, names, numbers, decisions, open questions and "
            "what the user wants; leave out pleasantries. Write notes, not prose, in at most "
            f"{words} words.")


def tokens(entries: list[ContextEntry], system_prompt: str = "") -> int:
    """About how many tokens these entries take (four characters a token, plus framing)."""
    characters = len(system_prompt) + sum(len(e.text) for e in entries)
    return (characters + 3) // 4 + 4 * len(entries)


def needs_compaction(entries: list[ContextEntry], system_prompt: str, budget: Budget) -> bool:
    unsummarised = sum(not e.summary for e in entries)
    return (tokens(entries, system_prompt) > budget.prompt
            or unsummarised > budget.entries)


def split(entries: list[ContextEntry], budget: Budget
          ) -> tuple[list[ContextEntry], list[ContextEntry]]:
    """Older entries to summarise, and recent ones to keep (at least the newest): within
    ``budget.keep`` tokens and half of ``budget.entries``."""
    most = max(1, budget.entries // 2)
    kept: list[ContextEntry] = []
    for entry in reversed(entries):
        if kept and (len(kept) == most or tokens([*kept, entry]) > budget.keep):
            break
        kept.insert(0, entry)
    older = entries[: len(entries) - len(kept)]
    return older, kept


def only_summaries(entries: list[ContextEntry], budget: Budget) -> bool:
    """True when what ``summarize`` would cover is the latest summary alone: nothing was said
    since it that is not kept verbatim, so compacting again would only summarise a summary."""
    older, _ = split(entries, budget)
    return bool(older) and all(entry.summary for entry in older)


def pieces(entries: list[ContextEntry], size: int) -> list[list[ContextEntry]]:
    """``entries`` in order, in runs of at most ``size`` tokens (or one entry)."""
    runs: list[list[ContextEntry]] = []
    for entry in entries:
        if runs and tokens([*runs[-1], entry]) <= size:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


async def summarize(
    router: Router, chain: list[ModelRef], entries: list[ContextEntry], budget: Budget,
    trail: Trail,
) -> AsyncIterator[Summary]:
    """Summaries of the older part of ``entries``, oldest piece first, each standing for
    everything up to its piece; none when there is nothing to compact."""
    older, kept = split(entries, budget)
    if not older:
        if tokens(kept) > budget.window:
            raise ContextOverflow("the newest message alone is longer than the model's "
                                  f"context window ({budget.window} tokens)")
        return
    before: list[ContextEntry] = []
    for piece in pieces(older, budget.piece):
        # A summary's row comes after the entries kept beside it, so its own seq says
        # nothing about what it covers: only the piece's other entries do.
        covers = max((entry.seq for entry in piece if not entry.summary), default=None)
        if covers is None:  # the previous summary alone: summarising it again gains nothing
            before = piece
            continue
        text, usage = await _summary(router, chain, [*before, *piece], budget, trail)
        yield Summary(text, covers, len(piece), usage)
        before = [ContextEntry(covers, Role.NOTE, text, summary=True)]


async def _summary(
    router: Router, chain: list[ModelRef], entries: list[ContextEntry], budget: Budget,
    trail: Trail,
) -> tuple[str, Usage]:
    request = instruction(budget.words)
    prompt = [ChatMessage(ChatRole.SYSTEM, e.text) if e.summary else ChatMessage(
        ChatRole.ASSISTANT if e.role is Role.ASSISTANT else ChatRole.USER, e.text)
        for e in entries]
    prompt.append(ChatMessage(ChatRole.USER, request))
    limit = budget.summary_output(tokens(entries, request))
    parts: list[str] = []
    usage = Usage()
    async for event in router.stream(chain, tuple(prompt), trail, max_output=limit):
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, UsageReport):
            usage += event.usage
    return "".join(parts).strip(), usage
