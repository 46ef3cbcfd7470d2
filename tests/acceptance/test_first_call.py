"""The first model call of a fresh gateway: loading the provider's SDK (half a second to a
second and a half of CPU) must not freeze the gateway for everyone else.

The gateway runs under ``import_gate.py``, which holds the import of ``openai`` until the
test opens the gate: whatever the gateway answers meanwhile, it answered while the import
was still going on.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clawgate.gateway.client import GatewayClient
from clawgate.testing.model_server import FakeModelServer, Reply
from tests.acceptance.cli import Home, wait_until

GATE = Path(__file__).with_name("import_gate.py")
KEY = "sk-first-call-3c9e1a"
#: How long the test waits for an answer before it opens the gate anyway (the gateway of a
#: failing version answers only then): a bound, not a measure
ANSWER_WITHIN_S = 15.0


def _configure(home: Home, server: FakeModelServer) -> None:
    home.use_model_server(server.openai_base_url, "TEST_FIRST_CALL_KEY", """
[runtime]
lease_seconds = 60

[queue]
mode = "followup"
debounce_ms = 0
""")


def _start_gated_gateway(home: Home, gate: Path) -> tuple[subprocess.Popen[str], str]:
    state = home.path / "gateway.json"
    gateway = subprocess.Popen(
        [sys.executable, str(GATE), str(gate), "gateway", "--port", "0"],
        env=home.env(), text=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    home.processes.append(gateway)
    wait_until(state.exists, 20, "the gateway to start", gateway)
    return gateway, str(json.loads(state.read_text())["url"])


def _running_runs(home: Home) -> int:
    with sqlite3.connect(f"file:{home.path / 'clawgate.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()
    return int(row[0])


async def test_stop_is_answered_while_the_first_turn_waits_for_the_sdk_import(
    home: Home, server: FakeModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(home, server)
    monkeypatch.setenv("TEST_FIRST_CALL_KEY", KEY)
    server.script(Reply("answered once the SDK was loaded"))
    gate = tmp_path / "gate"
    gate.mkdir()
    gateway, url = _start_gated_gateway(home, gate)
    token = (home.path / "gateway.token").read_text().strip()
    client = await GatewayClient.connect(url, token)
    try:
        await client.request("chat.send", session="main", text="the first message")
        wait_until(lambda: (gate / "importing").exists() and _running_runs(home) == 1, 20,
                   "the first turn to wait for the SDK", gateway)
        try:
            async with asyncio.timeout(ANSWER_WITHIN_S):
                stopped = await client.request("chat.abort", session="main")
        except TimeoutError:
            pytest.fail("the stop was not answered while the SDK was being imported: the "
                        "import froze the gateway")
        finally:
            (gate / "open").touch()
    finally:
        await client.close()
    assert stopped["confirmed"], stopped
    assert "(killed after" in stopped["text"]
    assert (gate / "importing").read_text() != "MainThread"  # not on the event loop's thread
    # The SDK loaded in the background serves the next turn.
    answered = home.run("agent", "-m", "the second message")
    assert (answered.returncode, answered.stdout) == (
        0, "answered once the SDK was loaded\n"), answered.stderr
    assert server.exchanges[-1].api_key == KEY
    gateway.terminate()
    assert gateway.wait(20) == 0
