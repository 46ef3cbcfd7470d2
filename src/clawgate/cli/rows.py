"""Sessions, runs and messages as users see them: JSON objects and text tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clawgate.domain import Attempt, InboundMessage, ModelRef, Outbound, Run, preview
from clawgate.store.protocol import SessionSummary

Json = dict[str, Any]


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds")


def session_row(summary: SessionSummary, default_model: ModelRef) -> Json:
    """The session row: status is the latest run's, or ``idle``; the model is the one the
    next turn will use (the session's own choice, or the default)."""
    session, run = summary.session, summary.latest_run
    model = session.model or default_model
    return {
        "key": session.key,
        "sessionId": session.id,
        "status": "idle" if run is None else str(run.status),
        "startedAt": _time(run.started_at if run else None),
        "endedAt": _time(run.ended_at if run else None),
        "runtimeMs": run.runtime_ms if run else None,
        "model": model.model,
        "modelProvider": model.provider,
        "inputTokens": session.usage.input_tokens,
        "outputTokens": session.usage.output_tokens,
        "cachedTokens": session.usage.cached_tokens,
        "waiting": summary.pending,
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
    return {
        "id": message.id,
        "receivedAt": _time(message.received_at),
        "channel": message.channel,
        "text": preview(message.text),
        "fate": str(message.fate),
        "reason": None if message.reason is None else str(message.reason),
        "runId": message.run_id,
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


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    return "\n".join(lines)


def dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)
