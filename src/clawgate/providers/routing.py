"""Choosing who answers: models, aliases, fallbacks, auth profiles, retries and cooldowns.

A turn's candidates are its model's auth profiles, then each fallback model's. Before the
first token of a reply:

* a transient failure (5xx, broken connection, malformed stream) is retried on the same
  candidate, with jittered, growing waits, then the next candidate is tried;
* a rate limit whose ``retry-after`` is short (and ends before the run's deadline) is waited
  out and the same candidate tried again, as one of those retries;
* otherwise rate limits, refused keys, billing trouble and overload move on at once and rest
  (a cooldown, persisted, that grows with each failure in a row): a refused key or billing
  trouble rests the whole profile, a rate limit or an overload only that model on it
  (providers limit each model apart). A rest belongs to the key that met it: once the
  profile's key is changed, it no longer applies. An answer forgives what rested the
  candidate that answered: its model on that profile, and the profile itself;
* a timeout moves on; so does a profile that is not configured (its key is not set), which
  is recorded but not rested: setting the key takes effect on the next turn;
* a context overflow or a malformed request is raised (no other candidate would do
  better); a stop is never failed over.

After the first token nothing is retried (the user has seen the text): the error is raised.
When no candidate answers, the last one's error is raised, or, when more than one was tried,
``CandidatesFailed``, which names each and why (the run's error: one place says it all).
Every try is written to a ``Trail``, which the run records: the attempts, the call in flight
(so a run stopped mid-reply can name it) and every token the providers reported, or an
estimate for a call that ended without a report (OpenAI-compatible servers report only in
their last chunk, which a stopped, timed-out or broken stream never gets to).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clawgate.clock import Clock
from clawgate.domain import Attempt, Cooldown, ModelRef, Usage, preview
from clawgate.errors import (
    AuthFailed,
    BillingFailed,
    CandidatesFailed,
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
    estimate_input,
    estimate_tokens,
)
from clawgate.providers.settings import RoutingPolicy
from clawgate.store.protocol import Store

_MOVE_ON_AND_REST = (RateLimited, AuthFailed, BillingFailed, Overloaded)
_REST_THE_MODEL = (RateLimited, Overloaded)  # the others rest the whole key
_MOVE_ON = (ProviderTimeout, NotConfigured)
_RAISE = (ContextOverflow, ProviderFatal)
COOLDOWN_CACHE_S = 1.0
MISSED_CHARS = 160  # each candidate's reason in the error of a turn none answered


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """A provider's auth profiles (each with its own adapter) and limits."""

    profiles: tuple[tuple[str, Provider], ...]
    context_window: int = 128_000
    max_output_tokens: int | None = None
    models: tuple[str, ...] = ()
    #: The fingerprint of each profile's key, by profile name (a profile without a key has
    #: none): a rest recorded for another key does not apply
    fingerprints: Mapping[str, str] = field(default_factory=dict)

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
    deadline: datetime | None = None  # the run's: no wait for a retry-after goes past it

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
        self._cooldowns: dict[tuple[str, str | None], Cooldown] = {}  # (profile, model)
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
        await self._refresh()
        candidates = [(m, name, adapter) for m in chain
                      for name, adapter in self.providers[m.provider].profiles]
        rests = [(m, self._rest_of(m, p)) for m, p, _ in candidates]
        if candidates and all(rest for _, rest in rests):
            raise _all_resting([(m, rest) for m, rest in rests if rest is not None])
        last: ProviderError | None = None
        missed: list[str] = []  # each candidate that did not answer, and why
        for model, profile, adapter in candidates:
            cooldown = self._rest_of(model, profile)  # this turn's own failures count too
            if cooldown is not None:
                trail.tried(model, profile, "cooling_down", cooldown.reason)
                missed.append(self._missed(model, profile, _resting(cooldown)))
                continue
            try:
                request = ModelRequest(model.model, messages, _lowered(
                    self.providers[model.provider].max_output_tokens, max_output))
                async for event in self._tries(model, profile, adapter, request, trail):
                    yield event
                return
            except _Declined as declined:
                last = declined.error
                missed.append(self._missed(model, profile, last.reason))
        if last is None:
            raise ProviderFatal("no candidate model is configured")
        raise last if len(missed) == 1 else CandidatesFailed(missed, last)

    def _missed(self, model: ModelRef, profile: str, why: str) -> str:
        """One candidate and why it did not answer, for the run's error: its profile is
        named when its provider has several."""
        several = len(self.providers[model.provider].profiles) > 1
        return f"{model}{f' via {profile}' if several else ''}: {preview(why, MISSED_CHARS)}"

    async def _tries(
        self, model: ModelRef, profile: str, adapter: Provider,
        request: ModelRequest, trail: Trail,
    ) -> AsyncIterator[StreamEvent]:
        for attempt in range(self.policy.retries + 1):
            call = _Call(request)
            trail.calling = (model, profile)
            try:
                async for event in _counted(adapter, call, trail):
                    yield event
            except ProviderError as error:
                trail.tried(model, profile, error.kind, str(error))
                if call.text or isinstance(error, _RAISE):
                    raise
                await self._sleep(await self._pause(model, profile, error, attempt, trail))
                continue
            trail.tried(model, profile, "answered")
            await self._forgive(model, profile)
            return

    async def _pause(
        self, model: ModelRef, profile: str, error: ProviderError, attempt: int, trail: Trail,
    ) -> float:
        """Seconds to wait before trying the candidate again; raises ``_Declined`` when the
        next candidate should be tried instead."""
        last = attempt == self.policy.retries
        wait = self._retry_after_wait(error, trail.deadline)
        if wait is not None and not last:
            return wait
        if isinstance(error, _MOVE_ON_AND_REST):
            await self._rest(model, profile, error)
            raise _Declined(error) from error
        if isinstance(error, _MOVE_ON) or last:
            raise _Declined(error) from error
        return self._backoff(attempt)

    def _retry_after_wait(self, error: ProviderError, deadline: datetime | None) -> float | None:
        """The provider's ``retry-after`` when it is short enough to wait out, and ends
        before the run's deadline."""
        if not isinstance(error, RateLimited) or error.retry_after is None:
            return None
        wait = error.retry_after
        if wait > self.policy.wait_retry_after_s:
            return None
        if deadline is not None and self._clock.now() + timedelta(seconds=wait) >= deadline:
            return None
        return wait

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff_cap_s, self.policy.backoff_s * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    # --- cooldowns -------------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Read the rests from the store (other processes record them too), at most once
        every ``COOLDOWN_CACHE_S``."""
        if time.monotonic() - self._cooldowns_read >= COOLDOWN_CACHE_S:
            self._cooldowns = {(c.profile_key, c.model): c for c in await self._store.cooldowns()}
            self._cooldowns_read = time.monotonic()

    def _rest_of(self, model: ModelRef, profile: str) -> Cooldown | None:
        """What keeps a candidate resting now, if anything: its whole key, or its model on
        that key (the later to end)."""
        key = _key(model, profile)
        found = [c for c in (self._cooldowns.get((key, None)),
                             self._cooldowns.get((key, model.model)))
                 if c is not None and self._in_force(c)]
        return max(found, key=lambda c: c.until, default=None)

    def _in_force(self, rest: Cooldown) -> bool:
        """Not over yet, and a rest of the key the profile has now (not of one replaced)."""
        return rest.until > self._clock.now() and rest.holds_for(
            self._fingerprint(rest.profile_key))

    def _fingerprint(self, profile_key: str) -> str | None:
        provider, _, profile = profile_key.partition(":")
        entry = self.providers.get(provider)
        return entry.fingerprints.get(profile) if entry else None

    async def cooldowns(self) -> list[Cooldown]:
        """Every rest in force now: whole profiles, and single models on a profile."""
        self._cooldowns_read = -COOLDOWN_CACHE_S
        await self._refresh()
        return sorted(filter(self._in_force, self._cooldowns.values()), key=lambda c: c.until)

    async def _rest(self, model: ModelRef, profile: str, error: ProviderError) -> None:
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        windows = (self.policy.overload_windows_s if isinstance(error, Overloaded)
                   else self.policy.cooldown_windows_s)
        only = model.model if isinstance(error, _REST_THE_MODEL) else None
        key = _key(model, profile)
        cooldown = await self._store.record_cooldown(
            key, f"{error.kind}: {error}", windows, retry_after, only, self._fingerprint(key))
        self._cooldowns[cooldown.profile_key, cooldown.model] = cooldown

    async def _forgive(self, model: ModelRef, profile: str) -> None:
        """The candidate answered: its key works, and so does its model on it. Other models
        resting on the same key keep resting."""
        key = _key(model, profile)
        if (key, None) in self._cooldowns or (key, model.model) in self._cooldowns:
            await self._store.clear_cooldown(key, model.model)
            self._cooldowns.pop((key, None), None)
            self._cooldowns.pop((key, model.model), None)

    async def prepare(self) -> None:
        """Set every provider up (SDKs imported and clients built, off the event loop), so
        that no turn waits for it. A profile that cannot be used (no key) is left for its
        turns to report."""
        for entry in self.providers.values():
            for _, adapter in entry.profiles:
                with contextlib.suppress(ProviderError):
                    await adapter.prepare()

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


@dataclass
class _Call:
    """One call of one candidate: the text it streamed, and whether it reported its tokens."""

    request: ModelRequest
    text: list[str] = field(default_factory=list)
    reported: bool = False

    def estimate(self) -> Usage:
        return Usage(estimate_input(self.request), estimate_tokens("".join(self.text)))


async def _counted(adapter: Provider, call: _Call, trail: Trail) -> AsyncIterator[StreamEvent]:
    """``adapter``'s stream, its tokens counted into ``trail`` as they are reported.

    A call that ends without a report counts an estimate instead: one that answered (a
    server that never reports), one stopped or timed out (cancelled), and one that broke
    after some text. A call refused before any text cost nothing.
    """
    try:
        async for event in adapter.stream(call.request):
            if isinstance(event, TextDelta):
                call.text.append(event.text)
            elif isinstance(event, UsageReport):
                call.reported = True
                trail.usage += event.usage
            yield event
    except ProviderError:
        if call.text and not call.reported:
            trail.usage += call.estimate()
        raise
    except BaseException:  # cancelled (stop, timeout, shutdown) or closed: count, go on ending
        if not call.reported:
            trail.usage += call.estimate()
        raise
    if not call.reported:
        estimate = call.estimate()
        trail.usage += estimate
        yield UsageReport(estimate)


def _key(model: ModelRef, profile: str) -> str:
    return f"{model.provider}:{profile}"


def _resting(rest: Cooldown) -> str:
    return f"resting until {rest.until.strftime('%H:%M:%S')} UTC ({rest.reason})"


def _all_resting(rests: list[tuple[ModelRef, Cooldown]]) -> CoolingDown:
    """Every candidate rests: when the first is back, and how to try it sooner."""
    model, soonest = min(rests, key=lambda pair: pair[1].until)
    return CoolingDown(
        f"every candidate is resting after failures; {soonest.label} is back at "
        f"{soonest.until.strftime('%H:%M:%S')} UTC (last: {soonest.reason}); "
        f"`clawgate models test {model}` tries it now and clears the rest if it answers"
    )


def _lowered(configured: int | None, cap: int | None) -> int | None:
    """The output limit for one call: the configured one, lowered to ``cap`` if given."""
    if cap is None:
        return configured
    return cap if configured is None else min(configured, cap)
