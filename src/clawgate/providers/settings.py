"""How an HTTP model provider is set up: its endpoint, limits and auth profiles.

Keys are read at the edge (the config loader reads the environment and key files) and carried
here; they never appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from clawgate.domain import key_fingerprint


class ProviderKind(StrEnum):
    OPENAI = "openai"  # any OpenAI-compatible Chat Completions endpoint
    ANTHROPIC = "anthropic"


class TokenLimitField(StrEnum):
    """How an OpenAI-compatible request names its output limit. api.openai.com wants
    ``max_completion_tokens`` (its reasoning models refuse ``max_tokens``); the servers that
    copy the API (Ollama, vLLM, llama.cpp, OpenRouter) all read ``max_tokens``."""

    MAX_TOKENS = "max_tokens"
    MAX_COMPLETION_TOKENS = "max_completion_tokens"


@dataclass(frozen=True, slots=True)
class Profile:
    """One set of credentials for a provider."""

    name: str
    source: str  # where the key comes from, for messages: "env OPENAI_API_KEY", "file ..."
    api_key: str | None = field(default=None, repr=False)  # None: not set (or not needed)
    #: Why the key that is set cannot be used (a character HTTP cannot carry, say); the key
    #: itself is then dropped (``api_key`` is None). The reason never quotes the key.
    unusable: str | None = None
    #: Why no key is set, for messages ("env K is not set", "file k does not exist", "file k
    #: is empty"); None says "<source> is not set".
    missing: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """The key's fingerprint (never the key itself), which its rests are recorded with;
        None when there is no key."""
        return key_fingerprint(self.api_key) if self.api_key else None


@dataclass(frozen=True, slots=True)
class HttpProviderSettings:
    name: str
    kind: ProviderKind
    profiles: tuple[Profile, ...]
    base_url: str | None = None  # None: the SDK's default (api.openai.com, api.anthropic.com)
    needs_key: bool = True  # local servers (Ollama, vLLM, llama.cpp) take none
    timeout_seconds: float = 120.0  # the longest silence on the connection before giving up
    context_window: int = 128_000
    max_output_tokens: int = 4096
    limit_field: TokenLimitField = TokenLimitField.MAX_TOKENS
    models: tuple[str, ...] = ()  # known model names, for `clawgate models list`
    headers: Mapping[str, str] = field(default_factory=dict)
    #: OpenAI kind: ask for usage at the end of the stream (``stream_options``); off for
    #: compatible servers that refuse the field (Mistral's answers 422)
    stream_usage: bool = True

    def secrets(self) -> list[str]:
        return [p.api_key for p in self.profiles if p.api_key]
