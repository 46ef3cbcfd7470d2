"""Settings: ``$CLAWGATE_HOME/config.toml`` read once, at the edge, into a frozen object.

A missing home is created with a commented default config. Every mistake in the file is a
``ConfigError`` naming the file, the line and the key; unknown keys are mistakes too (with a
suggestion), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from clawgate.domain import DropPolicy, ModelRef, QueueMode, QueueSettings
from clawgate.errors import ConfigError
from clawgate.providers.echo import EchoConfig, EchoFailure
from clawgate.providers.registry import ProviderConfig
from clawgate.runtime.settings import RuntimeSettings

E = TypeVar("E", bound=StrEnum)

DEFAULT_CONFIG = """\
# clawgate configuration. Every key is optional; these are the defaults.

[models]
default = "echo/echo"          # provider/model answering new sessions

[providers.echo]
kind = "echo"                  # the built-in offline provider: replies "echo: <text>"
delay_ms = 0                   # wait this long before replying
fail = ""                      # "", "rate_limit", "auth", "server" or "hang"

[runtime]
lease_seconds = 15             # how long an owner's claim on a run lasts without renewal
run_timeout_seconds = 600      # a turn running longer than this ends "timeout"
poll_interval_ms = 100         # how often to look for stops and work from other processes
context_entries = 200          # transcript entries a model call sees
max_concurrent_runs = 64       # turns in progress at once; more messages wait their turn
shutdown_grace_seconds = 5     # on shutdown, how long turns in flight may finish

[queue]                        # messages sent while a reply is being written
mode = "collect"               # followup, collect, steer or interrupt
debounce_ms = 1000             # wait for this much quiet before answering them
cap = 20                       # at most this many waiting messages per session
drop = "summarize"             # when full: drop "old", "new", or "summarize" the dropped
"""


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    config_path: Path
    database: Path
    runtime: RuntimeSettings
    providers: tuple[ProviderConfig, ...]


def home_from_env(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("CLAWGATE_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".clawgate"


def load(home: Path | None = None) -> Settings:
    """Read the settings, creating the home and a default config on first use."""
    home = home or home_from_env()
    config_path = home / "config.toml"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not config_path.exists():
            config_path.write_text(DEFAULT_CONFIG)
        text = config_path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot use {home}: {exc.strerror}", path=str(config_path)) from exc
    return parse(text, config_path, home)


def parse(text: str, config_path: Path, home: Path) -> Settings:
    source = _Source(str(config_path), text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(config_path),
                          line=_line_of_decode_error(exc)) from exc
    root = _Table(data, "", source)
    providers = _providers(root.table("providers"))
    runtime = _runtime(root, providers)
    root.done()
    return Settings(home, config_path, home / "clawgate.db", runtime, providers)


def _providers(table: _Table) -> tuple[ProviderConfig, ...]:
    if not table.data:
        return (EchoConfig("echo"),)
    found = []
    for name in list(table.data):
        entry = table.table(name)
        kind = entry.string("kind", "")
        if kind != "echo":
            entry.fail("kind", f"unknown provider kind {kind!r}; known kinds: echo")
        found.append(EchoConfig(
            name=name,
            delay_ms=entry.integer("delay_ms", 0, 0, 3_600_000),
            fail=entry.choice("fail", EchoFailure, EchoFailure.NONE),
        ))
        entry.done()
    return tuple(found)


def _runtime(root: _Table, providers: tuple[ProviderConfig, ...]) -> RuntimeSettings:
    models = root.table("models")
    default = models.string("default", "echo/echo")
    try:
        model = ModelRef.parse(default)
    except ValueError as exc:
        models.fail("default", str(exc))
    names = [p.name for p in providers]
    if model.provider not in names:
        models.fail("default", f"no provider named {model.provider!r} is configured "
                               f"(configured: {', '.join(names)})")
    models.done()
    run = root.table("runtime")
    queue = root.table("queue")
    settings = RuntimeSettings(
        default_model=model,
        queue=QueueSettings(
            mode=queue.choice("mode", QueueMode, QueueMode.COLLECT),
            debounce_ms=queue.integer("debounce_ms", 1000, 0, 600_000),
            cap=queue.integer("cap", 20, 1, 1000),
            drop=queue.choice("drop", DropPolicy, DropPolicy.SUMMARIZE),
        ),
        lease=timedelta(seconds=run.integer("lease_seconds", 15, 1, 3600)),
        run_timeout=timedelta(seconds=run.integer("run_timeout_seconds", 600, 1, 86_400)),
        poll_interval=run.integer("poll_interval_ms", 100, 10, 10_000) / 1000,
        context_entries=run.integer("context_entries", 200, 1, 100_000),
        max_concurrent_runs=run.integer("max_concurrent_runs", 64, 1, 10_000),
        shutdown_grace=float(run.integer("shutdown_grace_seconds", 5, 0, 3600)),
    )
    run.done()
    queue.done()
    return settings


class _Source:
    """The file's text, to say on which line a key was written."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, dotted: str) -> int | None:
        """The line of ``a.b.key = ...`` (or of the header ``[a.b.key]``), if written."""
        table, _, key = dotted.rpartition(".")
        current = ""
        for number, raw in enumerate(self.lines, start=1):
            line = raw.split("#", 1)[0].strip()
            if line.startswith("["):
                current = line.strip("[]").strip()
                if current == dotted:
                    return number
            elif current == table and line.partition("=")[0].strip().strip('"') == key:
                return number
        return None


class _Table:
    """One TOML table being read: typed getters, and a check that nothing is left over."""

    def __init__(self, data: dict[str, Any], path: str, source: _Source) -> None:
        self.data = dict(data)
        self.path = path
        self.source = source

    def _dotted(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> NoReturn:
        dotted = self._dotted(key)
        raise ConfigError(message, path=self.source.path, line=self.source.line_of(dotted),
                          key=dotted)

    def table(self, key: str) -> _Table:
        value = self.data.pop(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table ([{self._dotted(key)}]), got {_kind(value)}")
        return _Table(value, self._dotted(key), self.source)

    def string(self, key: str, default: str) -> str:
        value = self.data.pop(key, default)
        if not isinstance(value, str):
            self.fail(key, f"expected text in quotes, got {_kind(value)}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected a whole number, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        return int(value)

    def choice(self, key: str, kind: type[E], default: E) -> E:
        value = self.string(key, default.value)
        try:
            return kind(value)
        except ValueError:
            options = ", ".join(repr(m.value) for m in kind)
            self.fail(key, f"{value!r} is not one of {options}")

    def done(self) -> None:
        for key in self.data:
            known = _KNOWN.get(self.path.split(".")[0] if self.path else "", [])
            guess = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            self.fail(key, f"unknown key{hint}")


_KNOWN: dict[str, list[str]] = {
    "": ["models", "providers", "runtime", "queue"],
    "models": ["default"],
    "providers": ["kind", "delay_ms", "fail"],
    "runtime": ["lease_seconds", "run_timeout_seconds", "poll_interval_ms", "context_entries",
                "max_concurrent_runs", "shutdown_grace_seconds"],
    "queue": ["mode", "debounce_ms", "cap", "drop"],
}


def _kind(value: object) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _line_of_decode_error(exc: tomllib.TOMLDecodeError) -> int | None:
    marker = "(at line "
    message = str(exc)
    if marker not in message:
        return None
    digits = message.split(marker, 1)[1].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None
