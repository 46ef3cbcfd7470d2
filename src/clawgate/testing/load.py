"""A bounded load on a gateway: many WebSocket clients sending messages and stops.

Every loop is bounded in time and in count, and every request in time (a gateway that stops
answering is counted as ``timeout`` errors, not waited on forever); every message carries
an idempotency key, so a client that lost its connection can send it again without it
counting twice. ``verify`` then checks the
store: each acknowledged message has a fate, and no message is in a transcript twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clawgate.gateway.client import GatewayClient, GatewayError

if TYPE_CHECKING:
    from clawgate.views import Json

EXPECTED_ERRORS = frozenset({"unknown_session"})  # a stop before a session's first message
REQUEST_TIMEOUT_S = 30.0  # the longest a client waits for one answer
MAX_ACTIONS = 100_000  # per client: far more than any load sends in its time


@dataclass(frozen=True)
class Pace:
    """How each client acts: what share of its actions are stops, how long it thinks
    between them (at most), how long it waits for an answer."""

    stop_share: float = 0.05
    think_s: float = 0.05
    request_timeout_s: float = REQUEST_TIMEOUT_S


@dataclass
class LoadStats:
    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> message id
    unacked: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (session, text)
    ack_seconds: list[float] = field(default_factory=list)
    stops: int = 0
    duplicates: int = 0  # resends recognised by their idempotency key
    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # unexpected error codes
    expected_errors: Counter[str] = field(default_factory=Counter)
    dropped_connections: int = 0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.ack_seconds)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] * 1000


async def run_load(
    url: str, token: str | None, clients: int, sessions: int, seconds: float,
    pace: Pace | None = None, seed: int = 7, stats: LoadStats | None = None,
) -> LoadStats:
    """``clients`` connections on ``sessions`` sessions for ``seconds`` (then they stop)."""
    stats = stats or LoadStats()
    keys = session_keys(sessions)
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(
        _client(url, token, keys, deadline, stats, random.Random(seed + n), pace or Pace())
        for n in range(clients)))
    return stats


async def _client(
    url: str, token: str | None, keys: list[str], deadline: float, stats: LoadStats,
    rng: random.Random, pace: Pace,
) -> None:
    mine = rng.sample(keys, k=min(3, len(keys)))
    try:
        client = await GatewayClient.connect(url, token)
    except GatewayError:
        stats.dropped_connections += 1
        return
    async with client:
        drain = asyncio.create_task(_count_events(client, stats))
        try:
            await _counted(stats, _request(client, pace, "events.subscribe", sessions=mine))
            for _ in range(MAX_ACTIONS):
                if time.monotonic() >= deadline:
                    break
                await _one_action(client, rng.choice(mine), rng, stats, pace)
                await asyncio.sleep(rng.uniform(0, pace.think_s))
        except GatewayError as exc:
            if exc.code != "closed":
                raise
            stats.dropped_connections += 1
        finally:
            drain.cancel()


async def _one_action(client: GatewayClient, session: str, rng: random.Random,
                      stats: LoadStats, pace: Pace) -> None:
    if rng.random() < pace.stop_share:
        if await _counted(stats, _request(client, pace, "chat.abort", session=session)):
            stats.stops += 1
        return
    await _counted(stats, send(client, session, f"load {rng.random():.6f}",
                               f"k-{uuid.uuid4()}", stats, pace))


async def _counted(stats: LoadStats, action: Awaitable[object]) -> bool:
    """Do ``action``; count the error it met (a lost connection is raised); True if none."""
    try:
        await action
    except TimeoutError:
        stats.errors["timeout"] += 1
        return False
    except GatewayError as exc:
        if exc.code == "closed":
            raise
        bucket = stats.expected_errors if exc.code in EXPECTED_ERRORS else stats.errors
        bucket[exc.code] += 1
        return False
    return True


async def _request(client: GatewayClient, pace: Pace, method: str, **params: object) -> Json:
    """One request, waited on for at most the pace's request timeout (TimeoutError)."""
    async with asyncio.timeout(pace.request_timeout_s):
        return await client.request(method, **params)


async def send(client: GatewayClient, session: str, text: str, key: str, stats: LoadStats,
               pace: Pace | None = None) -> None:
    """Send one message; remember it as unacknowledged until the gateway says it has it."""
    stats.unacked[key] = (session, text)
    started = time.perf_counter()
    ack = await _request(client, pace or Pace(), "chat.send", session=session, text=text,
                         idempotencyKey=key)
    stats.ack_seconds.append(time.perf_counter() - started)
    stats.unacked.pop(key, None)
    stats.acked[key] = ack["messageId"]
    stats.duplicates += bool(ack["duplicate"])


async def resend_unacked(url: str, token: str | None, stats: LoadStats) -> int:
    """What a client does after a crash: send again what was never acknowledged."""
    pending = list(stats.unacked.items())
    async with await GatewayClient.connect(url, token) as client:
        for key, (session, text) in pending:
            await send(client, session, text, key, stats)
    return len(pending)


def session_keys(sessions: int) -> list[str]:
    """The keys of the sessions a load of ``sessions`` sessions uses."""
    return [f"load-{n}" for n in range(sessions)]


async def every_session_answers(url: str, token: str | None, sessions: int,
                                within: float) -> None:
    """Send each load session a message; wait (bounded) until every one is answered."""
    async with await GatewayClient.connect(url, token) as client, asyncio.timeout(within):
        keys = session_keys(sessions)
        await client.request("events.subscribe", sessions=keys)
        waiting: set[str] = set()
        for key in keys:
            ack = await client.request("chat.send", session=key, text="are you there?")
            waiting.add(ack["messageId"])
        while waiting:
            event = await client.next_event(within=within)
            if event["event"] in ("message.answered", "message.merged"):
                waiting.discard(event["payload"]["messageId"])


async def _count_events(client: GatewayClient, stats: LoadStats) -> None:
    async for _ in client.events():
        stats.events += 1


@dataclass(frozen=True)
class Verdict:
    messages: int
    without_fate: list[str]
    repeated_in_transcript: list[str]
    fates: dict[str, int]  # fate (and why, for a drop) -> messages

    @property
    def sound(self) -> bool:
        return not self.without_fate and not self.repeated_in_transcript


def verify(database: Path, stats: LoadStats) -> Verdict:
    """Read the store directly: every acknowledged message has a fate, none is repeated."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT id, fate, reason FROM inbound").fetchall()
        repeated = [row[0] for row in conn.execute(
            "SELECT message_id FROM transcript WHERE message_id IS NOT NULL"
            " GROUP BY message_id HAVING count(*) > 1")]
    fate = {message: f"{fate} ({reason})" if reason else fate for message, fate, reason in rows}
    acked = set(stats.acked.values())
    without = sorted(m for m in acked if fate.get(m, "missing") in ("pending", "missing"))
    return Verdict(len(acked), without, repeated,
                   dict(Counter(fate[m] for m in acked if m in fate).most_common()))


async def settle(database: Path, within: float) -> bool:
    """Wait (bounded) until no message waits and no run is active."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_quiet, database):
            return True
        await asyncio.sleep(0.2)
    return False


def _quiet(database: Path) -> bool:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        waiting = conn.execute("SELECT count(*) FROM inbound WHERE fate = 'pending'"
                               ).fetchone()[0]
        active = conn.execute("SELECT count(*) FROM runs WHERE status IN "
                              "('queued', 'running')").fetchone()[0]
    return not waiting and not active
