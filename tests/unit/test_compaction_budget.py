"""How a model's window is shared out: every combination the config allows leaves room."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawgate.config import parse
from clawgate.errors import ConfigError, ContextOverflow
from clawgate.providers.settings import HttpProviderSettings
from clawgate.runtime.compaction import FILL_LIMIT, budget, instruction, tokens

PATH = Path("/home/me/.clawgate/config.toml")


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int]:
    window = draw(st.integers(256, 10_000_000))
    return window, draw(st.integers(1, window // 2))


@given(windows(), st.text(max_size=40))
def test_what_compaction_keeps_is_well_under_what_triggers_it(
    limits: tuple[int, int], system_prompt: str,
) -> None:
    window, reserve = limits
    shares = budget(window, reserve, system_prompt, entries=200)
    after = tokens([], system_prompt) + shares.summary + shares.keep
    free = shares.prompt - after
    assert free >= 2 * shares.keep  # two thirds of the room are left for new turns
    assert shares.prompt + reserve <= window * FILL_LIMIT
    # a summarising call, with the summary before it, fits the window with its own reply
    request = tokens([], instruction(shares.words))
    fill = shares.piece + shares.summary + request
    assert fill + shares.summary_output(fill) <= window * FILL_LIMIT
    assert shares.summary_output(fill) >= min(reserve, 2 * shares.summary)


def test_a_system_prompt_that_leaves_no_room_is_named() -> None:
    with pytest.raises(ContextOverflow, match="leaves no room for the conversation"):
        budget(4096, 2048, "x" * 5000, entries=200)


def _provider(extra: str) -> HttpProviderSettings:
    text = ('[models]\ndefault = "ollama/llama3.1"\n[providers.ollama]\nkind = "openai"\n'
            f'base_url = "http://127.0.0.1:1/v1"\n{extra}')
    [provider] = parse(text, PATH, PATH.parent, env={}).providers
    assert isinstance(provider, HttpProviderSettings)
    return provider


def test_a_small_window_reserves_at_most_half_of_it_for_the_reply() -> None:
    assert _provider("context_window = 8192\n").max_output_tokens == 4096
    assert _provider("context_window = 4096\n").max_output_tokens == 2048
    assert _provider("context_window = 4096\nmax_output_tokens = 1000\n"
                     ).max_output_tokens == 1000


def test_a_reply_reservation_larger_than_half_the_window_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _provider("context_window = 4096\nmax_output_tokens = 4096\n")
    assert caught.value.key == "providers.ollama.max_output_tokens"
    assert caught.value.line == 7
    assert "at most half of context_window (2048)" in str(caught.value)
