"""The gateway under a bounded load, and killed with kill -9 in the middle of one."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest

from clawgate.testing.load import (
    LoadStats,
    every_session_answers,
    resend_unacked,
    run_load,
    settle,
    verify,
)
from tests.acceptance.cli import Home

pytestmark = pytest.mark.slow


def _configure(home: Home, delay_ms: int) -> None:
    (home.path / "config.toml").write_text(
        f'[providers.echo]\nkind = "echo"\ndelay_ms = {delay_ms}\n'
        '[queue]\nmode = "collect"\ndebounce_ms = 0\n')


def _token(home: Home) -> str:
    return (home.path / "gateway.token").read_text().strip()


@pytest.mark.timeout(300)
async def test_200_clients_on_50_sessions_for_60_s_every_message_has_a_fate(
    home: Home,
) -> None:
    _configure(home, delay_ms=20)
    gateway, url = home.start_gateway()

    stats = await run_load(url, _token(home), clients=200, sessions=50, seconds=60)

    assert await settle(home.path / "clawgate.db", within=60)
    verdict = verify(home.path / "clawgate.db", stats)
    assert verdict.messages > 1000
    assert stats.stops > 100
    assert verdict.sound, verdict
    assert not stats.errors  # only expected errors (a stop before a session's first message)
    assert not stats.dropped_connections
    assert home.run("doctor").returncode == 0
    assert gateway.poll() is None


@pytest.mark.timeout(240)
async def test_kill_9_under_load_then_restart_loses_and_duplicates_nothing(
    home: Home,
) -> None:
    _configure(home, delay_ms=100)
    gateway, url = home.start_gateway()
    stats = LoadStats()
    load = asyncio.create_task(run_load(url, _token(home), clients=200, sessions=50,
                                        seconds=60, stats=stats))
    await asyncio.sleep(10)
    gateway.send_signal(signal.SIGKILL)
    gateway.wait(5)
    await load  # the clients see their connections drop
    assert stats.dropped_connections > 0
    assert stats.acked  # it was under load when it died

    restarted, url = home.start_gateway()
    started = time.monotonic()
    resent = await resend_unacked(url, _token(home), stats)
    await every_session_answers(url, _token(home), sessions=50, within=30)
    took = time.monotonic() - started

    assert took < 10  # at once: nobody waited for a crashed owner's lease (15 s)
    assert await settle(home.path / "clawgate.db", within=60)
    verdict = verify(home.path / "clawgate.db", stats)
    assert verdict.sound, verdict
    assert stats.duplicates <= resent  # a resend the gateway already had is recognised
    assert home.run("doctor").returncode == 0
    assert restarted.poll() is None


def test_the_load_tool_reads_the_gateway_state_file(home: Home) -> None:
    gateway, url = home.start_gateway()
    state = json.loads((home.path / "gateway.json").read_text())
    assert state["url"] == url
    assert state["pid"] == gateway.pid
