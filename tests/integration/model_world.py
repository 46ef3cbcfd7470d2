"""Runtimes on a real SQLite file, talking through the official SDKs to a fake model server.

Two HTTP providers: ``openai`` (auth profiles ``work`` and ``home``) and ``anthropic``, whose
model is the fallback of the default ``openai/gpt-test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from clawgate.domain import ModelRef
from clawgate.providers.registry import build
from clawgate.providers.settings import HttpProviderSettings, Profile, ProviderKind, RoutingPolicy
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.sqlite import SqliteStore
from clawgate.testing import ManualClock
from clawgate.testing.model_server import FakeModelServer

WORK, HOME, CLAUDE_KEY = "sk-work-1111111111", "sk-home-2222222222", "sk-ant-3333333333"
GPT = ModelRef("openai", "gpt-test")
GPT_OTHER = ModelRef("openai", "gpt-other")  # another model on the same keys
CLAUDE = ModelRef("anthropic", "claude-test")


@dataclass
class World:
    server: FakeModelServer
    path: Path
    clock: ManualClock
    runtimes: list[Runtime]

    async def runtime(
        self, timeout_s: float = 5.0, window: int = 128_000, system_prompt: str = "",
        fallbacks: tuple[ModelRef, ...] = (CLAUDE,), run_timeout_s: float = 600,
        max_output: int = 50, context_entries: int = 200, work_key: str = WORK,
    ) -> Runtime:
        """A runtime on the world's database; ``work_key`` is the key profile ``work`` has."""
        providers = build([
            HttpProviderSettings("openai", ProviderKind.OPENAI,
                                 (Profile("work", "env W", work_key),
                                  Profile("home", "env H", HOME)),
                                 base_url=self.server.openai_base_url, timeout_seconds=timeout_s,
                                 context_window=window, max_output_tokens=max_output),
            HttpProviderSettings("anthropic", ProviderKind.ANTHROPIC,
                                 (Profile("default", "env A", CLAUDE_KEY),),
                                 base_url=self.server.url, timeout_seconds=timeout_s),
        ], self.clock)
        settings = RuntimeSettings(
            default_model=GPT, poll_interval=0.01, system_prompt=system_prompt,
            routing=RoutingPolicy(fallbacks=fallbacks, backoff_s=0.01),
            run_timeout=timedelta(seconds=run_timeout_s),
            context_entries=context_entries,
        )
        store = await SqliteStore.open(self.path, self.clock)
        runtime = Runtime(store, providers, settings)
        await runtime.start()
        self.runtimes.append(runtime)
        return runtime
