"""How records look to users, as JSON: the CLI's --json output and the gateway's payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clawgate.config import Settings
from clawgate.domain import (
    Attempt,
    Cooldown,
    InboundMessage,
    Outbound,
    Run,
    StoredEvent,
    TranscriptEntry,
    preview,
)
from clawgate.providers.settings import EchoConfig, Profile, ProviderConfig
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import SessionSummary

Json = dict[str, Any]
#: The echo provider's only profile, which needs no key.
ECHO_PROFILE = Profile("default", "none")


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def _seconds(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def session_row(summary: SessionSummary, defaults: RuntimeSettings) -> Json:
    """The session row: status is the latest run's, or ``idle``, and error why it did not
    end done; the model and the queue settings are the ones in force (the session's own
    choice, or the default)."""
    session, run = summary.session, summary.latest_run
    model = session.model or defaults.default_model
    queue = session.effective_queue(defaults.queue)
    return {
        "key": session.key,
        "sessionId": session.id,
        "status": "idle" if run is None else str(run.status),
        "startedAt": _time(run.started_at if run else None),
        "endedAt": _time(run.ended_at if run else None),
        "runtimeMs": run.runtime_ms if run else None,
        "error": run.error if run else None,
        "model": model.model,
        "modelProvider": model.provider,
        "inputTokens": session.usage.input_tokens,
        "outputTokens": session.usage.output_tokens,
        "cachedTokens": session.usage.cached_tokens,
        "waiting": summary.pending,
        "queue": {"mode": str(queue.mode), "debounceMs": queue.debounce_ms, "cap": queue.cap,
                  "drop": str(queue.drop)},
        "updatedAt": _time(session.updated_at),
    }


def run_row(run: Run, attempts: list[Attempt] | None = None) -> Json:
    return {
        "id": run.id,
        "status": str(run.status),
        "createdAt": _time(run.created_at),
        "startedAt": _time(run.started_at),
        "endedAt": _time(run.ended_at),
        "runtimeMs": run.runtime_ms,
        "model": run.model.model if run.model else None,
        "modelProvider": run.model.provider if run.model else None,
        "profile": run.profile,
        "inputTokens": run.usage.input_tokens,
        "outputTokens": run.usage.output_tokens,
        "cachedTokens": run.usage.cached_tokens,
        "error": run.error,
        "attempts": [{"model": str(a.model), "profile": a.profile, "outcome": a.outcome,
                      "error": a.error} for a in attempts or ()],
    }


def inbound_row(message: InboundMessage) -> Json:
    """A message and its fate. ``runId`` is the run that answered it, or for one dropped
    under ``summarize`` the run told what it said; ``summaryCleared`` says why no run was
    (``stopped``, ``reset``)."""
    cleared = message.summary_cleared
    return {
        "id": message.id,
        "receivedAt": _time(message.received_at),
        "channel": message.channel,
        "text": preview(message.text),
        "fate": str(message.fate),
        "reason": None if message.reason is None else str(message.reason),
        "runId": message.run_id or message.summarized_in,
        "summaryCleared": None if cleared is None else str(cleared),
    }


def outbound_row(item: Outbound) -> Json:
    return {
        "id": item.id,
        "runId": item.run_id,
        "channel": item.channel,
        "target": item.target,
        "status": str(item.status),
        "attempts": item.attempts,
        "lastError": item.last_error,
        "createdAt": _time(item.created_at),
        "deliveredAt": _time(item.delivered_at),
    }


def transcript_row(entry: TranscriptEntry) -> Json:
    return {
        "seq": entry.seq,
        "role": str(entry.role),
        "text": entry.text,
        "runId": entry.run_id,
        "messageId": entry.message_id,
        "stopped": entry.stopped,
        "summary": entry.covers_through is not None,
        "createdAt": _time(entry.created_at),
    }


def event_row(event: StoredEvent) -> Json:
    return {
        "session": event.session_key,
        "sessionId": event.session_id,
        "runId": event.run_id,
        "messageId": event.message_id,
        "at": _time(event.at),
        **event.detail,
    }


def model_listing(settings: Settings, resting: list[Cooldown]) -> dict[str, Any]:
    routing = settings.runtime.routing
    return {
        "default": str(settings.runtime.default_model),
        "fallbacks": [str(m) for m in routing.fallbacks],
        "aliases": {name: str(model) for name, model in sorted(routing.aliases.items())},
        "providers": [_provider_row(p, resting) for p in settings.providers],
    }


def _provider_row(config: ProviderConfig, resting: list[Cooldown]) -> dict[str, Any]:
    if isinstance(config, EchoConfig):  # no key, one profile: rests like any other
        return {"name": config.name, "kind": "echo", "baseUrl": None, "models": [],
                "profiles": [_profile_row(config.name, ECHO_PROFILE, resting)]}
    return {"name": config.name, "kind": str(config.kind),
            "baseUrl": config.base_url or "(the provider's default)",
            "contextWindow": config.context_window, "models": list(config.models),
            "profiles": [_profile_row(config.name, p, resting) for p in config.profiles]}


def _profile_row(provider: str, profile: Profile, resting: list[Cooldown]) -> dict[str, Any]:
    """A profile, its key's state, and what rests on it: the whole key, or single models."""
    mine = [c for c in resting if c.profile_key == f"{provider}:{profile.name}"]
    whole = next((c for c in mine if c.model is None), None)
    return {
        "name": profile.name, "keySource": profile.source, "key": _key_state(profile),
        "restingUntil": _seconds(whole.until) if whole else None,
        "restReason": whole.reason if whole else None,
        "restingModels": [
            {"model": c.model, "until": _seconds(c.until), "reason": c.reason}
            for c in sorted(mine, key=lambda c: c.model or "") if c.model is not None],
    }


def _key_state(profile: Profile) -> str:
    if profile.source == "none":
        return "none"
    if profile.unusable:
        return "unusable"
    return "set" if profile.api_key else "missing"
