"""How fast is a turn? Prints figures; asserts nothing.

    python bench/turns.py            # the full run (about a minute)
    python bench/turns.py --quick    # fewer turns, for a smoke check

1. Turns per second and p50/p99 turn latency (send -> reply recorded) with the echo provider
   and no delay: one session turn after turn, then 1,000 sessions at once.
2. Store time per turn (time spent awaiting the store, summed over one turn) with 100 and
   with 100,000 sessions already in the database. Those sessions are seeded by one bulk SQL
   transaction shaped like real turns (each: a session, a finished run, its message, two
   transcript entries); the schema's triggers and constraints apply as usual.
3. How long listing the 5,000 most recent sessions (``sessions.list``, ``clawgate sessions
   list``) takes in the big database: the store's one reader is busy for that long.
4. How long ``clawgate --help`` takes to start, in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from clawgate.domain import QueueMode, QueueSettings
from clawgate.providers.echo import EchoProvider
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.protocol import Store
from clawgate.store.sqlite import SqliteStore

SETTINGS = RuntimeSettings(queue=QueueSettings(mode=QueueMode.FOLLOWUP, debounce_ms=0))


class TimedStore:
    """Delegates to a store and adds up the time its callers spend waiting on it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.clock = inner.clock
        self.spent = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await target(*args, **kwargs)
            finally:
                self.spent += time.perf_counter() - started

        return timed


async def _runtime(store: Store) -> Runtime:
    runtime = Runtime(store, {"echo": EchoProvider()}, SETTINGS)
    await runtime.start()
    return runtime


async def _turn(runtime: Runtime, key: str, text: str) -> float:
    started = time.perf_counter()
    accepted = await runtime.send(key, text)
    outcome = await runtime.wait_for(accepted.message.id, within=30)
    assert outcome.run is not None, outcome
    assert outcome.run.status == "done", outcome
    return time.perf_counter() - started


def _report(label: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(len(ms) * 0.99))]
    print(f"{label:<34} {len(ms) / elapsed:8.0f} turns/s   p50 {p50:6.2f} ms   "
          f"p99 {p99:7.2f} ms   ({len(ms)} turns)")


async def one_session(folder: Path, turns: int) -> None:
    store = await SqliteStore.open(folder / "one.db")
    runtime = await _runtime(store)
    for i in range(50):  # warm up
        await _turn(runtime, "warm", f"w{i}")
    started = time.perf_counter()
    latencies = [await _turn(runtime, "s1", f"message {i}") for i in range(turns)]
    _report("1 session, turn after turn", latencies, time.perf_counter() - started)
    await runtime.close()
    await store.close()


async def many_sessions(folder: Path, sessions: int, turns_each: int) -> None:
    store = await SqliteStore.open(folder / "many.db")
    runtime = await _runtime(store)

    async def conversation(key: str) -> list[float]:
        return [await _turn(runtime, key, f"turn {i}") for i in range(turns_each)]

    started = time.perf_counter()
    results = await asyncio.gather(*(conversation(f"user-{n}") for n in range(sessions)))
    elapsed = time.perf_counter() - started
    _report(f"{sessions} sessions at once", [x for r in results for x in r], elapsed)
    await runtime.close()
    await store.close()


def seed(path: Path, sessions: int) -> None:
    """``sessions`` finished one-turn sessions, written in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    conn.execute("BEGIN IMMEDIATE")
    for chunk in range(0, sessions, 10_000):
        rows = range(chunk, min(sessions, chunk + 10_000))
        stamp = [(base + timedelta(seconds=n)).isoformat(timespec="microseconds") for n in rows]
        conn.executemany(
            "INSERT INTO sessions (id, key, created_at, updated_at, input_tokens, output_tokens)"
            " VALUES (?, ?, ?, ?, 3, 5)",
            [(f"ses_seed{n}", f"seed-{n}", t, t) for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "INSERT INTO inbound (id, session_id, session_key, channel, text, received_at)"
            " VALUES (?, ?, ?, 'cli', 'hello', ?)",
            [(f"msg_seed{n}", f"ses_seed{n}", f"seed-{n}", t)
             for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "INSERT INTO runs (id, session_id, status, created_at, owner_id, lease_expires_at)"
            " VALUES (?, ?, 'queued', ?, 'own_seed', ?)",
            [(f"run_seed{n}", f"ses_seed{n}", t, t) for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "UPDATE runs SET status = 'running', started_at = ?, provider = 'echo',"
            " model = 'echo' WHERE id = ?",
            [(t, f"run_seed{n}") for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "UPDATE runs SET status = 'done', ended_at = ?, runtime_ms = 1, input_tokens = 3,"
            " output_tokens = 5 WHERE id = ?",
            [(t, f"run_seed{n}") for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "UPDATE inbound SET fate = 'answered', run_id = ?, decided_at = ? WHERE id = ?",
            [(f"run_seed{n}", t, f"msg_seed{n}") for n, t in zip(rows, stamp, strict=True)])
        conn.executemany(
            "INSERT INTO transcript (session_id, run_id, message_id, role, text, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [row for n, t in zip(rows, stamp, strict=True) for row in (
                (f"ses_seed{n}", f"run_seed{n}", f"msg_seed{n}", "user", "hello", t),
                (f"ses_seed{n}", f"run_seed{n}", None, "assistant", "echo: hello", t))])
    conn.execute("COMMIT")
    conn.close()


async def store_times(folder: Path, sizes: tuple[int, ...], turns: int) -> list[float]:
    """Mean store time per turn with each number of sessions in the database.

    The databases take turns, one turn each in a round, so that whatever else the machine
    does while the benchmark runs weighs on every size alike.
    """
    stores, runtimes, timed = [], [], []
    for sessions in sizes:
        path = folder / f"seeded-{sessions}.db"
        await (await SqliteStore.open(path)).close()  # create the schema
        seed(path, sessions)
        inner = await SqliteStore.open(path)
        stores.append(inner)
        timed.append(TimedStore(inner))
        runtimes.append(await _runtime(cast(Store, timed[-1])))
    per_turn: list[list[float]] = [[] for _ in sizes]
    for i in range(-50, turns):  # the first 50 rounds warm up
        for n, sessions in enumerate(sizes):
            before = timed[n].spent
            await _turn(runtimes[n], f"seed-{(i * 7919) % sessions}", f"again {i}")
            if i >= 0:
                per_turn[n].append((timed[n].spent - before) * 1000)
    for sessions, times in zip(sizes, per_turn, strict=True):
        print(f"store time per turn, {sessions:>7,} sessions in the db:  mean "
              f"{statistics.fmean(times):5.2f} ms   p50 {statistics.median(times):5.2f} ms   "
              f"({turns} turns)")
    await list_latency(stores[-1], sizes[-1])
    for runtime, inner in zip(runtimes, stores, strict=True):
        await runtime.close()
        await inner.close()
    return [statistics.fmean(times) for times in per_turn]


async def list_latency(store: Store, sessions: int, limit: int = 5000, runs: int = 5) -> None:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        listed = await store.list_sessions(limit)
        times.append((time.perf_counter() - started) * 1000)
    print(f"sessions list, {len(listed):,} of {sessions:,} sessions:  median "
          f"{statistics.median(times):.0f} ms, max {max(times):.0f} ms over {runs} reads")


def help_startup(runs: int) -> None:
    command = [str(Path(sys.executable).with_name("clawgate")), "--help"]
    if not Path(command[0]).exists():
        command = [sys.executable, "-m", "clawgate", "--help"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    print(f"clawgate --help:  median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {runs} runs")


async def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        await one_session(folder, 300 if quick else 2000)
        await many_sessions(folder, 1000, 1 if quick else 3)
        small, big = await store_times(
            folder, (100, 10_000 if quick else 100_000), 200 if quick else 1000)
        print(f"store time with the big database vs 100 sessions: {big / small - 1:+.0%}")
    help_startup(5 if quick else 15)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this benchmark process: {rss:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="How fast is a turn? Prints figures.")
    parser.add_argument("--quick", action="store_true", help="fewer turns, a smoke check")
    asyncio.run(main(parser.parse_args().quick))
