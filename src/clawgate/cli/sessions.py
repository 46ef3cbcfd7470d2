"""``clawgate sessions list`` and ``clawgate sessions show KEY``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime

from clawgate.cli.common import OK, USAGE, open_app
from clawgate.cli.remote import connect_gateway
from clawgate.cli.rows import dash, table
from clawgate.clock import SystemClock
from clawgate.config import Settings
from clawgate.domain import check_key
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.limits import SESSION_ROWS, SESSIONS_LISTED
from clawgate.runtime.owner import this_process
from clawgate.runtime.recovery import recover
from clawgate.views import Json, inbound_row, outbound_row, run_row, session_row


async def main(args: argparse.Namespace, settings: Settings) -> int:
    client = await connect_gateway(settings)
    if client is not None:
        async with client:
            return await _via_gateway(client, args)
    async with open_app(settings) as app:
        # Runs whose process is gone (exited, or its lease expired) end interrupted first, so
        # none reads running; with a gateway up, its supervisor does this.
        await recover(app.store, this_process(SystemClock().now()))
        default = settings.runtime
        if args.action == "list":
            rows = [session_row(s, default) for s in await app.store.list_sessions(args.limit)]
            return _list(rows, (await app.store.counts()).sessions, args)
        summary = await app.store.summarize_session(check_key(args.key))
        if summary is None:
            return _no_session(args.key)
        row = session_row(summary, default)
        fetch = _fetched(args.limit)
        runs = await app.store.list_runs(summary.session.id, fetch)
        row["runs"] = [run_row(r, await app.store.list_attempts(r.id)) for r in runs]
        row["inbound"] = [inbound_row(m) for m in await app.store.list_inbound(
            summary.session.id, fetch)]
        row["outbox"] = [outbound_row(o) for o in await app.store.list_outbox(
            summary.session.id, fetch)]
        return _show(row, args)


async def _via_gateway(client: GatewayClient, args: argparse.Namespace) -> int:
    if args.action == "list":
        listed = await client.request("sessions.list", limit=args.limit)
        return _list(listed["sessions"], listed["total"], args)
    try:
        row = await client.request("sessions.get", session=check_key(args.key),
                                   limit=_fetched(args.limit))
    except GatewayError as exc:
        if exc.code != "unknown_session":
            raise
        return _no_session(args.key)
    return _show(row, args)


def _list(rows: list[Json], total: int, args: argparse.Namespace) -> int:
    """Print the most recent sessions, and say when there are more (as text: JSON has the
    rows only)."""
    if args.json:
        print(json.dumps(rows, indent=2))
        return OK
    print(_list_text(rows))
    if total > len(rows):
        shown = f"showing {len(rows)} of {total} sessions"
        print(f"\n({shown}; --limit N shows up to {SESSIONS_LISTED})"
              if args.limit < SESSIONS_LISTED else
              f"\n({shown}, the most that can be listed)")
    return OK


def _fetched(limit: int) -> int:
    """How many rows of each kind to read: one more than shown, to know whether there are
    more (none more than the gateway serves)."""
    return min(limit + 1, SESSION_ROWS)


def _show(row: Json, args: argparse.Namespace) -> int:
    """Print the session with its latest ``args.limit`` rows of each kind, and say where
    there are more (as text: JSON has the rows only)."""
    more = []
    for field, noun in (("runs", "runs"), ("inbound", "messages"), ("outbox", "replies")):
        rows: list[Json] = row[field]
        if len(rows) > args.limit or len(rows) == SESSION_ROWS:
            row[field] = rows[-args.limit:]
            more.append(noun)
    if args.json:
        print(json.dumps(row, indent=2))
        return OK
    print(_show_text(row))
    if more:
        what = f"the latest {args.limit} {_and(more)}"
        print(f"\n(showing {what}; there are older ones: --limit {SESSION_ROWS} shows up to "
              f"{SESSION_ROWS})" if args.limit < SESSION_ROWS else
              f"\n(showing {what}, the most that can be shown; there may be older ones)")
    return OK


def _and(words: list[str]) -> str:
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _no_session(key: str) -> int:
    """An unknown key is bad input (most likely a typo), as for ``clawgate stop``."""
    print(f"clawgate: no session with key {key!r} (see: clawgate sessions list)",
          file=sys.stderr)
    return USAGE


def _list_text(rows: list[Json]) -> str:
    if not rows:
        return "no sessions yet (start one with: clawgate chat)"
    return table(
        [[str(r["key"]), str(r["status"]), f"{r['modelProvider']}/{r['model']}",
          f"{r['inputTokens']}/{r['outputTokens']}", str(r["waiting"]), _short(r["updatedAt"])]
         for r in rows],
        ["KEY", "STATUS", "MODEL", "TOKENS IN/OUT", "WAITING", "UPDATED"],
    )


def _show_text(row: Json) -> str:
    runs: list[Json] = row["runs"]
    inbound: list[Json] = row["inbound"]
    head = [
        f"session  {row['key']} ({row['sessionId']})",
        f"status   {row['status']}",
        f"model    {row['modelProvider']}/{row['model']}",
        f"tokens   {_tokens(row)}",
        f"updated  {_short(row['updatedAt'])}",
    ]
    run_table = table(
        [[str(r["id"]), str(r["status"]), _short(r["startedAt"]), dash(r["runtimeMs"]),
          f"{dash(r['modelProvider'])}/{dash(r['model'])}", dash(r["profile"]),
          f"{r['inputTokens']}/{r['outputTokens']}/{r['cachedTokens']}", dash(r["error"])]
         for r in runs],
        ["RUN", "STATUS", "STARTED", "MS", "MODEL", "PROFILE", "IN/OUT/CACHED", "ERROR"],
    )
    ended = {r["id"]: r["status"] for r in runs}
    message_table = table(
        [[str(m["id"]), _short(m["receivedAt"]), _fate(m, ended), _reason(m),
          dash(m["runId"]), str(m["text"])] for m in inbound],
        ["MESSAGE", "RECEIVED", "FATE", "REASON", "RUN", "TEXT"],
    )
    parts = [*head, "", run_table, *_attempts_text(runs), "", message_table]
    outbox: list[Json] = row["outbox"]
    if outbox:
        parts += ["", table(
            [[str(o["id"]), f"{o['channel']}:{o['target']}", str(o["status"]),
              str(o["attempts"]), dash(o["lastError"])] for o in outbox],
            ["REPLY", "TO", "DELIVERY", "TRIES", "LAST ERROR"],
        )]
    return "\n".join(parts)


def _fate(message: Json, run_status: dict[str, str]) -> str:
    """The message's fate, and how its run ended when that was not with a reply: "answered"
    says a run took the message up, not that the run succeeded (the run of a dropped one
    was told what it said)."""
    status = run_status.get(message["runId"] or "")
    if status in (None, "done", "queued", "running") or message["fate"] == "dropped":
        return str(message["fate"])
    return f"{message['fate']} (run {status})"


def _reason(message: Json) -> str:
    """Why a message was dropped; for a summarized one, if its summary was cleared."""
    cleared = message.get("summaryCleared")
    reason = dash(message["reason"])
    return f"{reason} (summary cleared: {cleared})" if cleared else reason


def _tokens(row: Json) -> str:
    cached = f" ({row['cachedTokens']} of them cached)" if row.get("cachedTokens") else ""
    return f"{row['inputTokens']} in{cached}, {row['outputTokens']} out"


def _attempts_text(runs: list[Json]) -> list[str]:
    """Every candidate tried, for the runs where more happened than one answer."""
    rows = []
    for run in runs:
        tried: list[Json] = run.get("attempts") or []
        if [a["outcome"] for a in tried] in ([], ["answered"]):
            continue
        rows += [[str(run["id"]) if n == 1 else "", str(n), str(a["model"]), str(a["profile"]),
                  str(a["outcome"]), dash(a["error"])] for n, a in enumerate(tried, 1)]
    if not rows:
        return []
    return ["", "candidates tried, in order:",
            table(rows, ["RUN", "TRY", "MODEL", "PROFILE", "OUTCOME", "WHY"])]


def _short(value: object) -> str:
    """A stored time (UTC, ISO 8601) as the user's local time, its zone named (--json keeps
    UTC)."""
    if not isinstance(value, str):
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
