"""The gateway's start banner warns when its default model has no usable key."""

from __future__ import annotations

from pathlib import Path

from clawgate.config import parse
from clawgate.gateway.server import keys_warning

PATH = Path("/home/me/.clawgate/config.toml")
OPENAI = """\
[models]
default = "openai/gpt-test"
{fallbacks}
[providers.openai]
kind = "openai"
api_key_env = "K"

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:11434/v1"

[providers.echo]
kind = "echo"
"""


def _warning(fallbacks: str, env: dict[str, str]) -> str | None:
    return keys_warning(parse(OPENAI.format(fallbacks=fallbacks), PATH, PATH.parent, env))


def test_no_warning_when_the_default_model_has_a_key() -> None:
    assert _warning("", {"K": "sk-1"}) is None


def test_the_warning_names_the_fallback_that_answers_instead() -> None:
    assert _warning('fallbacks = ["openai/other", "local/llama"]', {}) == (
        "the default model openai/gpt-test has no usable key (env K is not set): its turns "
        "go to local/llama. This gateway reads keys only now, at start: set the key, then "
        "restart it")


def test_the_warning_says_when_no_model_of_the_chain_can_answer() -> None:
    warning = _warning("", {"K": " "})
    assert warning is not None
    assert warning.startswith("the default model openai/gpt-test has no usable key (env K "
                              "is empty): no fallback has one either, so every turn fails.")
