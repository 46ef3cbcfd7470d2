"""Choosing who answers: models, aliases, fallbacks, auth profiles, retries and cooldowns.

A turn's candidates are its model's auth profiles, then each fallback model's. Before the
first token of a reply:

* a transient failure (5xx, broken connection, malformed stream) is retried on the same
  candidate, with jittered, growing waits, then the next candidate is tried;
* rate limits, refused keys, billing trouble and overload move on at once and rest that
  profile (a cooldown, persisted, that grows with each failure in a row);
* a timeout moves on; so does a profile that is not configured (its key is not set), which
  is recorded but not rested: setting the key takes effect on the next turn;
* a context overflow or a malformed request is raised (no other candidate would do
  better); a stop is never failed over.

After the first token nothing is retried (the user has seen the text): the error is raised.
Every try is written to a ``Trail``, which the run records: the attempts, the call in flight
(so a run stopped mid-reply can name it) and every token the providers reported.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from clawgate.clock import Clock
from clawgate.domain import Attempt, Cooldown, ModelRef, Usage
from clawgate.errors import (
    AuthFailed,
    BillingFailed,
    ContextOverflow,
    CoolingDown,
    InvalidInput,
    NotConfigured,
    Overloaded,
    ProviderError,
    ProviderFatal,
    ProviderTimeout,
    RateLimited,
)
from clawgate.providers.base import (
    ChatMessage,
    ModelRequest,
    Provider,
    StreamEvent,
    TextDelta,
    UsageReport,
)
from clawgate.store.protocol import Store

_MOVE_ON_AND_REST = (RateLimited, AuthFailed, BillingFailed, Overloaded)
_MOVE_ON = (ProviderTimeout, NotConfigured)
_RAISE = (ContextOverflow, ProviderFatal)
COOLDOWN_CACHE_S = 1.0


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


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """A provider's auth profiles (each with its own adapter) and limits."""

    profiles: tuple[tuple[str, Provider], ...]
    context_window: int = 128_000
    max_output_tokens: int | None = None
    models: tuple[str, ...] = ()

    @classmethod
    def single(cls, provider: Provider) -> ProviderEntry:
        return cls(((("default", provider),)), provider.capabilities.context_window)


@dataclass
class Trail:
    """What the router did for one run: each candidate tried, the one being called now, and
    the tokens the providers reported, counted as they arrive (so a call that fails, or is
    stopped or timed out halfway, still counts what it cost)."""

    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    calling: tuple[ModelRef, str] | None = None  # (model, auth profile) streaming now

    def tried(self, model: ModelRef, profile: str, outcome: str, error: str | None = None
              ) -> None:
        self.calling = None
        self.attempts.append(Attempt(model, profile, outcome, error))

    def ended(self, outcome: str, error: str | None = None) -> list[Attempt]:
        """Every attempt, with the call still in flight (if any) closed as ``outcome``."""
        if self.calling is None:
            return list(self.attempts)
        model, profile = self.calling
        return [*self.attempts, Attempt(model, profile, outcome, error)]


class Router:
    def __init__(
        self, providers: Mapping[str, ProviderEntry], store: Store, clock: Clock,
        policy: RoutingPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.providers = dict(providers)
        self.policy = policy or RoutingPolicy()
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._cooldowns: dict[str, Cooldown] = {}
        self._cooldowns_read = -COOLDOWN_CACHE_S

    # --- names -------------------------------------------------------------------------

    def resolve(self, text: str) -> ModelRef:
        """An alias or ``provider/model``, checked against the configured providers."""
        name = text.strip()
        model = self.policy.aliases.get(name)
        if model is None:
            try:
                model = ModelRef.parse(name)
            except ValueError as exc:
                aliases = ", ".join(sorted(self.policy.aliases)) or "none"
                raise InvalidInput(f"{exc} (or an alias: {aliases})") from None
        if model.provider not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise InvalidInput(f"no provider named {model.provider!r} (configured: {known})")
        return model

    def chain(self, primary: ModelRef) -> list[ModelRef]:
        """The model, then the fallbacks; only configured providers, each model once."""
        seen: list[ModelRef] = []
        for model in (primary, *self.policy.fallbacks):
            if model.provider in self.providers and model not in seen:
                seen.append(model)
        return seen

    def window(self, model: ModelRef) -> int:
        entry = self.providers.get(model.provider)
        return entry.context_window if entry else 8192

    def output_limit(self, model: ModelRef) -> int:
        entry = self.providers.get(model.provider)
        return (entry.max_output_tokens if entry else None) or 1024

    # --- calling -------------------------------------------------------------------------

    async def stream(
        self, chain: Sequence[ModelRef], messages: tuple[ChatMessage, ...], trail: Trail,
        max_output: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The first candidate that answers streams its reply; ``trail`` records every try.

        ``max_output`` lowers the output limit a provider is configured with, for this call.
        """
        resting = await self._resting()
        candidates = [(m, name, adapter) for m in chain
                      for name, adapter in self.providers[m.provider].profiles]
        if candidates and all(_key(m, p) in resting for m, p, _ in candidates):
            raise _all_resting(candidates, resting)
        last: ProviderError | None = None
        for model, profile, adapter in candidates:
            if _key(model, profile) in resting:
                cooldown = resting[_key(model, profile)]
                trail.tried(model, profile, "cooling_down", cooldown.reason)
                continue
            try:
                request = ModelRequest(model.model, messages, _lowered(
                    self.providers[model.provider].max_output_tokens, max_output))
                async for event in self._tries(model, profile, adapter, request, trail):
                    yield event
                return
            except _Declined as declined:
                last = declined.error
        raise last or ProviderFatal("no candidate model is configured")

    async def _tries(
        self, model: ModelRef, profile: str, adapter: Provider,
        request: ModelRequest, trail: Trail,
    ) -> AsyncIterator[StreamEvent]:
        for attempt in range(self.policy.retries + 1):
            started = False
            trail.calling = (model, profile)
            try:
                async for event in adapter.stream(request):
                    started = started or isinstance(event, TextDelta)
                    if isinstance(event, UsageReport):
                        trail.usage += event.usage
                    yield event
            except ProviderError as error:
                trail.tried(model, profile, error.kind, str(error))
                if started or isinstance(error, _RAISE):
                    raise
                if isinstance(error, _MOVE_ON_AND_REST):
                    await self._rest(model, profile, error)
                    raise _Declined(error) from error
                if isinstance(error, _MOVE_ON) or attempt == self.policy.retries:
                    raise _Declined(error) from error
                await self._sleep(self._backoff(attempt))
                continue
            trail.tried(model, profile, "answered")
            await self._forgive(model, profile)
            return

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff_cap_s, self.policy.backoff_s * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    # --- cooldowns -------------------------------------------------------------------------

    async def _resting(self) -> dict[str, Cooldown]:
        if time.monotonic() - self._cooldowns_read >= COOLDOWN_CACHE_S:
            self._cooldowns = {c.profile_key: c for c in await self._store.cooldowns()}
            self._cooldowns_read = time.monotonic()
        now = self._clock.now()
        return {k: c for k, c in self._cooldowns.items() if c.until > now}

    async def cooldowns(self) -> list[Cooldown]:
        """Every profile resting now."""
        self._cooldowns_read = -COOLDOWN_CACHE_S
        return sorted((await self._resting()).values(), key=lambda c: c.until)

    async def _rest(self, model: ModelRef, profile: str, error: ProviderError) -> None:
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        windows = (self.policy.overload_windows_s if isinstance(error, Overloaded)
                   else self.policy.cooldown_windows_s)
        cooldown = await self._store.record_cooldown(
            _key(model, profile), f"{error.kind}: {error}", windows, retry_after)
        self._cooldowns[cooldown.profile_key] = cooldown

    async def _forgive(self, model: ModelRef, profile: str) -> None:
        if _key(model, profile) in self._cooldowns:
            await self._store.clear_cooldown(_key(model, profile))
            self._cooldowns.pop(_key(model, profile), None)

    async def aclose(self) -> None:
        for entry in self.providers.values():
            for _, adapter in entry.profiles:
                closer = getattr(adapter, "aclose", None)
                if closer is not None:
                    await closer()


class _Declined(Exception):
    """A candidate failed before its first token; try the next one."""

    def __init__(self, error: ProviderError) -> None:
        self.error = error


def _key(model: ModelRef, profile: str) -> str:
    return f"{model.provider}:{profile}"


def _all_resting(
    candidates: list[tuple[ModelRef, str, Provider]], resting: dict[str, Cooldown]
) -> CoolingDown:
    soonest = min((resting[_key(m, p)] for m, p, _ in candidates), key=lambda c: c.until)
    return CoolingDown(
        f"every candidate is resting after failures; {soonest.profile_key} is back at "
        f"{soonest.until.strftime('%H:%M:%S')} UTC (last: {soonest.reason})"
    )


def _lowered(configured: int | None, cap: int | None) -> int | None:
    """The output limit for one call: the configured one, lowered to ``cap`` if given."""
    if cap is None:
        return configured
    return cap if configured is None else min(configured, cap)
