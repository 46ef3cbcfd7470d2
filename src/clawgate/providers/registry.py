"""Building the configured providers: each becomes an entry of auth profiles for the router."""

from __future__ import annotations

from collections.abc import Iterable

from clawgate.clock import Clock
from clawgate.providers.base import Provider
from clawgate.providers.echo import EchoProvider
from clawgate.providers.routing import ProviderEntry
from clawgate.providers.settings import (
    EchoConfig,
    HttpProviderSettings,
    ProviderConfig,
    ProviderKind,
)


def build(
    configs: Iterable[ProviderConfig], clock: Clock | None = None
) -> dict[str, ProviderEntry]:
    """The entries by provider name; ``clock`` (the system's by default) dates what the
    providers answer, such as a retry-after given as a date."""
    return {config.name: entry(config, clock) for config in configs}


def entry(config: ProviderConfig, clock: Clock | None = None) -> ProviderEntry:
    if isinstance(config, EchoConfig):
        return ProviderEntry.single(EchoProvider(config.name, config.delay_ms, config.fail,
                                                 config.chunk_delay_ms))
    profiles: list[tuple[str, Provider]] = [
        (p.name, adapter(config, p.name, clock)) for p in config.profiles]
    fingerprints = {p.name: p.fingerprint for p in config.profiles if p.fingerprint}
    return ProviderEntry(tuple(profiles), config.context_window, config.max_output_tokens,
                         config.models, fingerprints)


def adapter(config: HttpProviderSettings, profile: str, clock: Clock | None = None) -> Provider:
    """The adapter for one of ``config``'s profiles; its module is imported only now, so a
    command that builds no HTTP provider never loads it."""
    chosen = next(p for p in config.profiles if p.name == profile)
    if config.kind is ProviderKind.ANTHROPIC:
        from clawgate.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(config, chosen, clock)
    from clawgate.providers.openai import OpenAIAdapter

    return OpenAIAdapter(config, chosen, clock)
