"""How the model providers are set up: the echo provider's behaviour, an HTTP provider's
endpoint, limits and auth profiles, and the router's policy. Plain data: the config loader
builds it without importing any provider's code.

Keys are read at the edge (the config loader reads the environment and key files) and carried
here; they never appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from clawgate.domain import ModelRef, key_fingerprint


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
    def why_no_key(self) -> str:
        """Why this profile has no key to send ("env K is not set", "the key in ... contains
        a character that cannot be sent")."""
        return self.unusable or self.missing or f"{self.source} is not set"

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


class EchoFailure(StrEnum):
    NONE = ""
    RATE_LIMIT = "rate_limit"
    AUTH = "auth"
    SERVER = "server"
    HANG = "hang"


@dataclass(frozen=True, slots=True)
class EchoConfig:
    name: str
    delay_ms: int = 0
    fail: EchoFailure = EchoFailure.NONE
    chunk_delay_ms: int = 0  # a pause between streamed words, to watch streaming


#: The configuration of one provider, of any kind.
ProviderConfig = EchoConfig | HttpProviderSettings


def keyless(config: ProviderConfig) -> str | None:
    """Why none of the provider's profiles can be used for want of a key; None when one can
    (or none is needed)."""
    if isinstance(config, EchoConfig) or not config.needs_key:
        return None
    if any(p.api_key for p in config.profiles):
        return None
    return "; ".join(p.why_no_key for p in config.profiles)


def read_at_start(configs: Iterable[ProviderConfig], reader: str
                  ) -> tuple[ProviderConfig, ...]:
    """The configs as a long-running process (``reader``: "the gateway (pid 12)") holds
    them: why a key is missing or unusable also says that it was looked for there, when
    that process started (a key set in another shell since is not seen)."""
    return tuple(_read_at_start(c, reader) if isinstance(c, HttpProviderSettings) else c
                 for c in configs)


def _read_at_start(config: HttpProviderSettings, reader: str) -> HttpProviderSettings:
    profiles = []
    for p in config.profiles:
        where = (f"in the environment of {reader}" if p.source.startswith("env ")
                 else f"for {reader}")
        note = f"{where}, which reads keys when it starts: set the key, then restart it"
        profiles.append(replace(
            p, missing=(p.missing if p.api_key or p.unusable or p.source == "none"
                        else f"{p.why_no_key} {note}"),
            unusable=f"{p.unusable} ({note})" if p.unusable else None))
    return replace(config, profiles=tuple(profiles))


def secrets(configs: Iterable[ProviderConfig]) -> list[str]:
    """Every key the configuration holds (to keep them out of logs and messages)."""
    return [s for c in configs if isinstance(c, HttpProviderSettings) for s in c.secrets()]


def public_url(url: str) -> str:
    """``url`` with no user, password, query or fragment; "" if it is not a URL."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if not parts.scheme or not host:
        return ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    fallbacks: tuple[ModelRef, ...] = ()
    aliases: Mapping[str, ModelRef] = field(default_factory=dict)
    retries: int = 2  # extra tries of one candidate for transient failures
    backoff_s: float = 0.5  # the first wait; doubles each time, jittered
    backoff_cap_s: float = 8.0
    cooldown_windows_s: tuple[float, ...] = (60.0, 300.0, 1500.0, 3600.0)
    # An overload (503/529) is often over in seconds: a short first rest, growing likewise.
    overload_windows_s: tuple[float, ...] = (10.0, 30.0, 120.0, 300.0)
    # A rate limit that says to retry within this many seconds is waited out, not rested.
    wait_retry_after_s: float = 5.0
