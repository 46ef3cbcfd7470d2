"""Settings: ``$CLAWGATE_HOME/config.toml`` read once, at the edge, into a frozen object.

A missing home is created with a commented default config. Every mistake in the file is a
``ConfigError`` naming the file, the line and the key; unknown keys are mistakes too (with a
suggestion), so a typo never silently falls back to a default. Keys for model providers are
read from the environment or key files here, and nowhere else.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from clawgate import config_providers
from clawgate.config_toml import Table
from clawgate.config_toml import load as load_toml
from clawgate.domain import DropPolicy, ModelRef, QueueMode, QueueSettings
from clawgate.errors import ConfigError
from clawgate.gateway.settings import Auth, GatewaySettings
from clawgate.providers.settings import HttpProviderSettings, ProviderConfig, RoutingPolicy
from clawgate.runtime.settings import RuntimeSettings

DEFAULT_CONFIG = """\
# clawgate configuration. Every key is optional; these are the defaults.
# Real model providers (OpenAI, Anthropic, OpenRouter, Ollama, ...): see the README.

[models]
default = "echo/echo"          # provider/model (or an alias) answering new sessions
fallbacks = []                 # tried in order when the default cannot answer

[models.aliases]               # short names for /model, e.g. fast = "openai/gpt-4o-mini"

[providers.echo]
kind = "echo"                  # the built-in offline provider: replies "echo: <text>"
delay_ms = 0                   # wait this long before replying
fail = ""                      # "", "rate_limit", "auth", "server" or "hang"

[agent]
system_prompt = ""             # what the model is told before every conversation

[gateway]
host = "127.0.0.1"             # where `clawgate gateway` listens (loopback: only this machine)
port = 18789
auth = "token"                 # "token" (see `clawgate gateway token`) or "none" (loopback only)

[routing]
retries = 2                    # extra tries of one model after a transient error
backoff_ms = 500               # the first wait between them (doubles, with jitter)
cooldown_minutes = [1, 5, 25, 60]  # how long a failing key rests, growing per failure
overload_seconds = [10, 30, 120, 300]  # how long an overloaded provider rests, likewise
wait_retry_after_seconds = 5   # a rate limit asking for at most this wait is waited out

[runtime]
lease_seconds = 15             # how long an owner's claim on a run lasts without renewal
run_timeout_seconds = 600      # a turn running longer than this ends "timeout"
poll_interval_ms = 100         # how often to look for stops and work from other processes
context_entries = 200          # transcript entries a model call sees at most (older: summarised)
max_concurrent_runs = 64       # turns in progress at once; more messages wait their turn
shutdown_grace_seconds = 5     # on shutdown, how long turns in flight may finish

[queue]                        # messages sent while a reply is being written
mode = "collect"               # followup, collect, steer or interrupt
debounce_ms = 1000             # wait for this much quiet before answering them
cap = 20                       # at most this many waiting messages per session
drop = "summarize"             # when full: drop "old", "new", or "summarize" the dropped
"""

ROOT_KEYS = ("models", "providers", "agent", "gateway", "routing", "runtime", "queue")
MODELS_KEYS = ("default", "fallbacks", "aliases")
RUNTIME_KEYS = ("lease_seconds", "run_timeout_seconds", "poll_interval_ms", "context_entries",
                "max_concurrent_runs", "shutdown_grace_seconds")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a process's settings were made from, to tell whether two processes (a running
    gateway and a command) see the same: a digest of the config file's text, and one of
    where each key is read and what was found there (set or not, usable or not, and the
    key's own fingerprint, which cannot give the key back); never a key."""

    file: str = ""
    keys: str = ""

    def change(self, other: Fingerprint) -> str | None:
        """What differs from ``other``: "config.toml", else "keys"; None when nothing does,
        or when either is not known. (Another file may well read other keys: the file is
        what to name then.)"""
        if not (self.file and other.file):
            return None
        if self.file != other.file:
            return "config.toml"
        return "keys" if self.keys != other.keys else None


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    config_path: Path
    database: Path
    runtime: RuntimeSettings
    providers: tuple[ProviderConfig, ...]
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    #: what these were made from (not part of what they mean: an empty file and the
    #: default one give equal settings)
    fingerprint: Fingerprint = field(default_factory=Fingerprint, compare=False)

    @property
    def token_path(self) -> Path:
        return self.home / "gateway.token"

    @property
    def gateway_state(self) -> Path:
        """Written by a running gateway so that the CLI can find it."""
        return self.home / "gateway.json"


def home_from_env(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    raw = env.get("CLAWGATE_HOME", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".clawgate"


def load(home: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings, creating the home and a default config on first use."""
    env = os.environ if env is None else env
    home = home or home_from_env(env)
    config_path = home / "config.toml"
    _make_home(home)
    return parse(_read_config(config_path), config_path, home, env)


def _make_home(home: Path) -> None:
    if home.exists() and not home.is_dir():
        raise ConfigError(f"the clawgate home {home} is a file; it must be a folder "
                          "(set CLAWGATE_HOME to use another one)")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the clawgate home {home}: {exc.strerror}") from exc


def _read_config(path: Path) -> str:
    """The config file's text (a default one is written on first use)."""
    if path.is_dir():
        raise ConfigError("this is a folder; it must be a file", path=str(path))
    try:
        if not path.exists():
            path.write_text(DEFAULT_CONFIG, encoding="utf-8")
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror}", path=str(path)) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"byte 0x{raw[exc.start]:02x} is not UTF-8 text; save the file "
                          "as UTF-8", path=str(path), line=line) from exc


def parse(
    text: str, config_path: Path, home: Path, env: Mapping[str, str] | None = None
) -> Settings:
    root = load_toml(text, str(config_path))
    root.known = ROOT_KEYS
    providers = config_providers.providers(
        root.table("providers", config_providers.PROVIDER_KEYS), env or {}, config_path.parent)
    runtime = _runtime(root, providers)
    gateway = _gateway(root.table("gateway", ("host", "port", "auth", "max_frame_kib")))
    root.done()
    return Settings(home, config_path, home / "clawgate.db", runtime, providers, gateway,
                    Fingerprint(_digest([text]), _digest(_key_states(providers))))


def _key_states(providers: Iterable[ProviderConfig]) -> list[str]:
    """Where each profile's key is read, and what was found there (never the key)."""
    states = []
    for config in providers:
        if isinstance(config, HttpProviderSettings):
            states += [f"{config.name}/{p.name} {p.source}: "
                       f"{p.fingerprint or ('unusable' if p.unusable else 'none')}"
                       for p in config.profiles]
    return states


def _digest(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:16]


def _gateway(table: Table) -> GatewaySettings:
    settings = GatewaySettings(
        host=table.string("host", "127.0.0.1"),
        port=table.integer("port", 18789, 1, 65535),
        auth=table.choice("auth", Auth, Auth.TOKEN),
        max_frame_bytes=table.integer("max_frame_kib", 1024, 1, 65536) * 1024,
    )
    if settings.auth is Auth.NONE and not settings.loopback:
        table.fail("auth", f"auth = \"none\" is only allowed on a loopback address, and host "
                           f"is {settings.host!r}; anyone who can reach it could use it")
    table.done()
    return settings


def _runtime(root: Table, providers: tuple[ProviderConfig, ...]) -> RuntimeSettings:
    names = [p.name for p in providers]
    default, routing = _models(root.table("models", MODELS_KEYS), names, root)
    agent = root.table("agent", ("system_prompt",))
    system_prompt = agent.string("system_prompt", "")
    agent.done()
    run = root.table("runtime", RUNTIME_KEYS)
    settings = RuntimeSettings(
        default_model=default,
        queue=_queue(root.table("queue", ("mode", "debounce_ms", "cap", "drop"))),
        routing=routing,
        system_prompt=system_prompt,
        lease=timedelta(seconds=run.integer("lease_seconds", 15, 1, 3600)),
        run_timeout=timedelta(seconds=run.integer("run_timeout_seconds", 600, 1, 86_400)),
        poll_interval=run.integer("poll_interval_ms", 100, 10, 10_000) / 1000,
        context_entries=run.integer("context_entries", 200, 1, 100_000),
        max_concurrent_runs=run.integer("max_concurrent_runs", 64, 1, 10_000),
        shutdown_grace=float(run.integer("shutdown_grace_seconds", 5, 0, 3600)),
    )
    run.done()
    return settings


def _models(models: Table, names: list[str], root: Table) -> tuple[ModelRef, RoutingPolicy]:
    aliases = _aliases(models.table("aliases"), names)
    if not models.has("default") and "echo" not in names:
        models.fail("default", "no default model is set (without one, new sessions would use "
                               "echo/echo, and no echo provider is configured): set "
                               f"[models] default = \"{names[0]}/<model>\"")
    default = _ref(models, "default", models.string("default", "echo/echo"), names, aliases)
    fallbacks = tuple(_ref(models, "fallbacks", text, names, aliases)
                      for text in models.strings("fallbacks"))
    models.done()
    routing = root.table("routing", ("retries", "backoff_ms", "cooldown_minutes",
                                     "overload_seconds", "wait_retry_after_seconds"))
    policy = RoutingPolicy(
        fallbacks=fallbacks, aliases=aliases,
        retries=routing.integer("retries", 2, 0, 10),
        backoff_s=routing.integer("backoff_ms", 500, 0, 60_000) / 1000,
        cooldown_windows_s=tuple(m * 60 for m in routing.numbers(
            "cooldown_minutes", [1, 5, 25, 60], 0, 1440)),
        overload_windows_s=tuple(routing.numbers(
            "overload_seconds", [10, 30, 120, 300], 0, 86_400)),
        wait_retry_after_s=routing.number("wait_retry_after_seconds", 5, 0, 60),
    )
    routing.done()
    return default, policy


def _aliases(table: Table, names: list[str]) -> dict[str, ModelRef]:
    """Short names for models; each points at a provider/model, never at another alias
    (no chains, no loops), and none is itself a provider/model (which it would redirect)."""
    written = list(table.data)
    aliases = {}
    for name in written:
        text = table.string(name, "")
        if "/" in name or not name.strip():
            table.fail(name, f"an alias is a short name without \"/\" (such as \"fast\"), "
                             f"got {name!r}: as a provider/model it would send every use "
                             "of that model elsewhere")
        if text in written:
            table.fail(name, f"an alias points at a provider/model, not at another alias "
                             f"({text!r}): write the provider/model that {text!r} points at")
        aliases[name] = _ref(table, name, text, names, {})
    return aliases


def _ref(table: Table, key: str, text: str, names: list[str],
         aliases: Mapping[str, ModelRef]) -> ModelRef:
    if text in aliases:
        return aliases[text]
    try:
        model = ModelRef.parse(text)
    except ValueError as exc:
        table.fail(key, str(exc) + (f" or an alias ({', '.join(aliases)})" if aliases else ""))
    if model.provider not in names:
        table.fail(key, f"no provider named {model.provider!r} is configured "
                        f"(configured: {', '.join(names)})")
    return model


def _queue(queue: Table) -> QueueSettings:
    settings = QueueSettings(
        mode=queue.choice("mode", QueueMode, QueueMode.COLLECT),
        debounce_ms=queue.integer("debounce_ms", 1000, 0, 600_000),
        cap=queue.integer("cap", 20, 1, 1000),
        drop=queue.choice("drop", DropPolicy, DropPolicy.SUMMARIZE),
    )
    queue.done()
    return settings
