"""Running the real ``clawgate`` command as a subprocess, against a home of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.acceptance.terminal import Terminal

CONFIG = """\
[models]
default = "echo/echo"

[providers.echo]
kind = "echo"
delay_ms = {delay_ms}
chunk_delay_ms = {chunk_delay_ms}
fail = "{fail}"

[runtime]
lease_seconds = {lease}
run_timeout_seconds = {run_timeout}
poll_interval_ms = 50
shutdown_grace_seconds = {grace}
{queue}"""

#: Most tests want each message answered on its own at once; ``queue=None`` keeps the
#: shipped defaults (collect, with a debounce).
FOLLOWUP = """
[queue]
mode = "followup"
debounce_ms = 0
"""


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.processes: list[subprocess.Popen[str]] = []
        self.terminals: list[Terminal] = []
        self.configure()

    def cleanup(self) -> None:
        """Kill whatever is still running and close every pipe (bounded in time)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)
        for terminal in self.terminals:
            terminal.close()

    def configure(self, delay_ms: int = 0, fail: str = "", lease: int = 15,
                  grace: int = 5, queue: str | None = FOLLOWUP, run_timeout: int = 600,
                  chunk_delay_ms: int = 0) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        text = CONFIG.format(delay_ms=delay_ms, chunk_delay_ms=chunk_delay_ms, fail=fail,
                             lease=lease, grace=grace, queue=queue or "",
                             run_timeout=run_timeout)
        (self.path / "config.toml").write_text(text)

    def use_model_server(self, base_url: str, key_env: str, more: str = "") -> None:
        """The default model is ``openai/gpt-test`` at ``base_url`` (the fake model server),
        its key in the environment variable ``key_env``; ``more`` is added to the config."""
        (self.path / "config.toml").write_text(f"""
[models]
default = "openai/gpt-test"

[providers.openai]
kind = "openai"
base_url = "{base_url}"
api_key_env = "{key_env}"
{more}""")

    def env(self) -> dict[str, str]:
        return {**os.environ, "CLAWGATE_HOME": str(self.path), "PYTHONUNBUFFERED": "1"}

    def run(self, *args: str, stdin: str | bytes | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """The command's outcome; ``stdin`` as bytes is sent as it is (no encoding)."""
        data = stdin.encode() if isinstance(stdin, str) else stdin
        done = subprocess.run(
            [sys.executable, "-m", "clawgate", *args], env=self.env(), input=data,
            capture_output=True, timeout=timeout, check=False,
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode())

    def start(self, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "clawgate", *args], env=self.env(), text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def terminal(self, *args: str, env: dict[str, str] | None = None) -> Terminal:
        """``clawgate`` in a pseudo-terminal, typed at as a person would (``env``: added to
        its environment)."""
        terminal = Terminal([sys.executable, "-m", "clawgate", *args],
                            {**self.env(), **(env or {})})
        self.terminals.append(terminal)
        return terminal

    def start_gateway(self) -> tuple[subprocess.Popen[str], str]:
        """``clawgate gateway`` on a free port; its URL once it listens."""
        state = self.path / "gateway.json"
        state.unlink(missing_ok=True)
        gateway = self.start("gateway", "--port", "0")
        wait_until(state.exists, 20, "the gateway to start", gateway)
        return gateway, str(json.loads(state.read_text())["url"])

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    def latest_run(self, key: str) -> dict[str, Any] | None:
        done = self.run("sessions", "show", key, "--json")
        if done.returncode != 0:
            return None
        runs: list[dict[str, Any]] = json.loads(done.stdout)["runs"]
        return runs[-1] if runs else None


def wait_until(
    check: Callable[[], bool], within: float, what: str,
    process: subprocess.Popen[str] | None = None,
) -> float:
    """Poll ``check`` (bounded in time); return how long it took.

    If ``process`` has exited meanwhile, the failure says how and what it printed.
    """
    started = time.monotonic()
    while not check():
        if process is not None and process.poll() is not None:
            _, err = process.communicate(timeout=5)
            raise AssertionError(f"{what}: the process exited {process.returncode}: {err}")
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within}s")
        time.sleep(0.05)
    return time.monotonic() - started
