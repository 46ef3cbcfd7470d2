"""Building the configured providers: each becomes an entry of auth profiles for the router."""

from __future__ import annotations

from collections.abc import Iterable

from clawgate.providers.anthropic import AnthropicAdapter
from clawgate.providers.base import Provider
from clawgate.providers.echo import EchoConfig, EchoProvider
from clawgate.providers.openai import OpenAIAdapter
from clawgate.providers.routing import ProviderEntry
from clawgate.providers.settings import HttpProviderSettings, ProviderKind

#: The configuration of one provider, of any kind.
ProviderConfig = EchoConfig | HttpProviderSettings


def build(configs: Iterable[ProviderConfig]) -> dict[str, ProviderEntry]:
    return {config.name: entry(config) for config in configs}


def entry(config: ProviderConfig) -> ProviderEntry:
    if isinstance(config, EchoConfig):
        return ProviderEntry.single(EchoProvider(config.name, config.delay_ms, config.fail,
                                                 config.chunk_delay_ms))
    profiles: list[tuple[str, Provider]] = [
        (p.name, adapter(config, p.name)) for p in config.profiles]
    return ProviderEntry(tuple(profiles), config.context_window, config.max_output_tokens,
                         config.models)


def adapter(config: HttpProviderSettings, profile: str) -> Provider:
    chosen = next(p for p in config.profiles if p.name == profile)
    if config.kind is ProviderKind.ANTHROPIC:
        return AnthropicAdapter(config, chosen)
    return OpenAIAdapter(config, chosen)


def secrets(configs: Iterable[ProviderConfig]) -> list[str]:
    """Every key the configuration holds (to keep them out of logs and messages)."""
    return [s for c in configs if isinstance(c, HttpProviderSettings) for s in c.secrets()]
