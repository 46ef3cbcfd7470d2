"""The CLI's help: every option says what it does, and --help and --version load nothing
but the argument parser; a command loads only what it uses, so it starts fast."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clawgate.cli.main import parser
from clawgate.gateway.settings import GatewaySettings


def _parsers(top: argparse.ArgumentParser, name: str = "clawgate"
             ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, top)]
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                found += _parsers(child, f"{name} {sub}")
    return found


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{name} {action.dest}" for name, command in _parsers(parser())
               for action in command._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert missing == []


def test_the_gateway_help_shows_the_default_address() -> None:
    defaults = GatewaySettings()
    text = " ".join(dict(_parsers(parser()))["clawgate gateway"].format_help().split())
    assert f"(default: {defaults.host}, or [gateway] host in config.toml)" in text
    assert f"(default: {defaults.port}, or [gateway] port in config.toml)" in text


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_only_the_parser(flag: str) -> None:
    probe = ("import sys\nfrom clawgate.cli.main import main\ntry:\n    main([sys.argv[1]])\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('clawgate')))")
    done = subprocess.run([sys.executable, "-c", probe, flag], capture_output=True,
                          text=True, check=True)
    assert done.stdout.splitlines()[-1] == str(
        ["clawgate", "clawgate.cli", "clawgate.cli.main", "clawgate.limits"])


def _modules_after(*argv: str) -> tuple[list[str], set[str]]:
    """What ``clawgate *argv`` printed, and every module it had loaded by its end."""
    probe = ("import json, sys\nfrom clawgate.cli.main import main\ncode = main(sys.argv[1:])\n"
             "print(json.dumps([code, sorted(sys.modules)]))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                          text=True, check=True, timeout=60)
    *printed, last = done.stdout.splitlines()
    code, modules = json.loads(last)
    assert code == 0, done.stderr
    return printed, set(modules)


HEAVY = ("asyncio", "websockets", "sqlite3", "clawgate.store.sqlite", "clawgate.runtime.runtime",
         "clawgate.providers.echo", "clawgate.providers.openai", "clawgate.providers.anthropic")


def test_gateway_token_reads_its_file_without_an_event_loop_store_or_providers(
    tmp_path: Path,
) -> None:
    printed, modules = _modules_after("--home", str(tmp_path), "gateway", "token")

    assert printed == [(tmp_path / "gateway.token").read_text().strip()]
    assert sorted(modules.intersection(HEAVY)) == []


def test_a_command_working_in_process_loads_no_websocket_client(tmp_path: Path) -> None:
    printed, modules = _modules_after("--home", str(tmp_path), "agent", "-m", "hi")

    assert printed == ["echo: hi"]
    assert "clawgate.store.sqlite" in modules
    assert sorted(m for m in modules if m.split(".")[0] == "websockets") == []
