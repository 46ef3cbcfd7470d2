"""The ``[providers.<name>]`` sections: the echo provider, and HTTP providers with their keys.

Keys are read here, at the edge: from an environment variable (``api_key_env``) or a file
(``api_key_file``; a relative path is taken from the config file's folder, so a gateway reads
the same key wherever it was started), once per profile. A key that is not set, or holds a
character HTTP cannot carry, is not an error here (the profile fails over when used, saying
why, and `clawgate models list` says so); a key written into the config file itself is
refused, so the file can be shared.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from clawgate.config_toml import Table
from clawgate.providers.settings import (
    EchoConfig,
    EchoFailure,
    HttpProviderSettings,
    Profile,
    ProviderConfig,
    ProviderKind,
    TokenLimitField,
    public_url,
)

PROVIDER_KEYS = ("kind", "delay_ms", "chunk_delay_ms", "fail", "base_url", "api_key_env",
                 "api_key_file", "profiles", "timeout_seconds", "context_window",
                 "max_output_tokens", "max_tokens_field", "models", "headers", "stream_usage")
PROFILE_KEYS = ("name", "api_key_env", "api_key_file")
#: Headers that carry a key: refused in ``headers``, as ``api_key`` is (lower case).
KEY_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})
KEYS_ELSEWHERE = ("keys do not belong in the config file; put the key in an environment "
                  "variable (api_key_env) or a file (api_key_file)")
DEFAULT_OUTPUT = 4096  # max_output_tokens, unless context_window is smaller than twice it
DEFAULT_WINDOWS = {ProviderKind.OPENAI: 128_000, ProviderKind.ANTHROPIC: 200_000}


@dataclass(frozen=True, slots=True)
class KeyPlaces:
    """Where keys are read: the environment, and files (a relative path from ``folder``,
    the config file's)."""

    env: Mapping[str, str]
    folder: Path

    def path(self, key_file: str) -> Path:
        path = Path(key_file).expanduser()
        return path if path.is_absolute() else (self.folder / path).absolute()


class Kind(StrEnum):
    ECHO = "echo"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def providers(
    table: Table, env: Mapping[str, str], folder: Path
) -> tuple[ProviderConfig, ...]:
    """The configured providers; ``folder`` (the config file's) anchors relative key files."""
    if not table.data:
        return (EchoConfig("echo"),)
    keys = KeyPlaces(env, folder)
    for name in table.data:
        if not name or "/" in name or not name.isprintable() or " " in name:
            table.fail(name, f"a provider's name is the first part of its models' references "
                             f"(name/model), so it cannot be empty or hold \"/\" or spaces; "
                             f"got {name!r}")
    return tuple(_provider(name, table.table(name, PROVIDER_KEYS), keys)
                 for name in list(table.data))


def _provider(name: str, table: Table, keys: KeyPlaces) -> ProviderConfig:
    if table.has("api_key"):
        table.fail("api_key", KEYS_ELSEWHERE)
    if not table.has("kind"):
        table.fail("kind", "every provider needs a kind: \"echo\", \"openai\" or \"anthropic\"")
    kind = table.choice("kind", Kind, Kind.ECHO)
    if kind is Kind.ECHO:
        config: ProviderConfig = EchoConfig(
            name, table.integer("delay_ms", 0, 0, 3_600_000),
            table.choice("fail", EchoFailure, EchoFailure.NONE),
            table.integer("chunk_delay_ms", 0, 0, 60_000))
    else:
        config = _http(name, ProviderKind(kind.value), table, keys)
    table.done()
    return config


def _http(name: str, kind: ProviderKind, table: Table, keys: KeyPlaces
          ) -> HttpProviderSettings:
    profiles = _profiles(table, keys)
    needs_key = any(p.source != "none" for p in profiles)
    if kind is ProviderKind.ANTHROPIC and not needs_key:
        table.fail("api_key_env", "an anthropic provider needs api_key_env or api_key_file")
    base_url = _base_url(table)
    window = table.integer("context_window", DEFAULT_WINDOWS[kind], 256, 10_000_000)
    return HttpProviderSettings(
        name=name, kind=kind, profiles=profiles, needs_key=needs_key, base_url=base_url,
        timeout_seconds=float(table.integer("timeout_seconds", 120, 1, 3600)),
        context_window=window,
        max_output_tokens=_output_limit(table, window),
        limit_field=table.choice("max_tokens_field", TokenLimitField, _limit_field(base_url)),
        models=tuple(table.strings("models")),
        headers=_headers(table),
        stream_usage=_stream_usage(kind, table),
    )


def _headers(table: Table) -> dict[str, str]:
    """Extra request headers; none that carries a key (the provider sends the profile's key
    in the header it wants)."""
    headers = table.string_table("headers")
    for name in headers:
        if name.strip().lower() in KEY_HEADERS:
            table.fail(f"headers.{name}", f"the {name} header carries a key, and "
                                          f"{KEYS_ELSEWHERE}; the provider sends it itself")
    return headers


def _stream_usage(kind: ProviderKind, table: Table) -> bool:
    """Whether an OpenAI-compatible request asks for usage in the stream (``stream_options``);
    some compatible servers (Mistral's) refuse the field."""
    if kind is ProviderKind.ANTHROPIC and table.has("stream_usage"):
        table.fail("stream_usage", "only openai providers take stream_usage (Anthropic "
                                   "always reports usage)")
    return table.boolean("stream_usage", True)


def _limit_field(base_url: str | None) -> TokenLimitField:
    """OpenAI's own endpoint (the SDK's default, or written out) wants max_completion_tokens;
    the servers that copy its API read max_tokens."""
    if base_url is None or urlsplit(public_url(base_url)).hostname == "api.openai.com":
        return TokenLimitField.MAX_COMPLETION_TOKENS
    return TokenLimitField.MAX_TOKENS


def _base_url(table: Table) -> str | None:
    """The endpoint, which must be a whole http(s) URL: ``localhost:11434/v1`` would be taken
    for a path and the request would go somewhere else."""
    url = (table.optional_string("base_url") or "").strip() or None
    if url is not None and not public_url(url).startswith(("http://", "https://")):
        table.fail("base_url", "must be a URL starting with http:// or https:// "
                               "(for a local server: \"http://127.0.0.1:11434/v1\")")
    return url


def _output_limit(table: Table, window: int) -> int:
    """The reply's reservation: at most half the window, so the conversation has room."""
    most = window // 2
    limit = table.integer("max_output_tokens", min(DEFAULT_OUTPUT, most), 1, 1_000_000)
    if limit > most:
        table.fail("max_output_tokens", f"at most half of context_window ({most}), so the "
                                        f"conversation has room; got {limit}")
    return limit


def _profiles(table: Table, keys: KeyPlaces) -> tuple[Profile, ...]:
    listed = table.tables("profiles", PROFILE_KEYS)
    if listed:
        if table.has("api_key_env") or table.has("api_key_file"):
            table.fail("api_key_env", "give the key in each [[profiles]] entry, not both")
        found = [_profile(p.string("name", ""), p, keys) for p in listed]
        for profile_table, profile in zip(listed, found, strict=True):
            if not profile.name:
                profile_table.fail("name", "every profile needs a name")
            profile_table.done()
        names = [p.name for p in found]
        if len(set(names)) != len(names):
            table.fail("profiles", f"profile names must differ: {', '.join(names)}")
        return tuple(found)
    return (_profile("default", table, keys),)


def _profile(name: str, table: Table, keys: KeyPlaces) -> Profile:
    variable = table.optional_string("api_key_env")
    key_file = table.optional_string("api_key_file")
    if variable and key_file:
        table.fail("api_key_file", "use api_key_env or api_key_file, not both")
    if variable:
        raw = keys.env.get(variable)
        return _keyed(name, f"env {variable}", raw, "is not set" if raw is None else "is empty")
    if key_file:
        path = keys.path(key_file)
        written = Path(key_file).expanduser().is_absolute()  # "~/..." reads better as written
        source = f"file {key_file if written else path}"
        raw = _read_key(table, path)
        return _keyed(name, source, raw, "does not exist" if raw is None else "is empty")
    return Profile(name, "none")


def _keyed(name: str, source: str, raw: str | None, blank: str) -> Profile:
    """A profile with the key from ``source``, surrounding whitespace dropped; ``blank`` says
    why there is none when ``raw`` holds nothing ("is not set", "does not exist"). A key HTTP
    cannot carry (a non-breaking space pasted with it, a curly quote) is unusable, like an
    unset one: the profile fails over when used, and says why (never quoting the key)."""
    key = (raw or "").strip()
    if not key:
        return Profile(name, source, missing=f"{source} {blank}")
    bad = _unsendable(key)
    if bad is None:
        return Profile(name, source, key)
    return Profile(name, source, unusable=f"the key in {source} contains a character that "
                                          f"cannot be sent ({bad})")


def _unsendable(key: str) -> str | None:
    """The first character of ``key`` an HTTP header cannot carry, as "U+00A0 NO-BREAK SPACE
    at position 10" (counted from 1 in the key as stripped); None when there is none."""
    for position, char in enumerate(key, 1):
        if not " " <= char <= "~":
            name = unicodedata.name(char, "")
            return f"U+{ord(char):04X}{' ' + name if name else ''} at position {position}"
    return None


def _read_key(table: Table, path: Path) -> str | None:
    """The file's text; None when it does not exist."""
    try:  # bytes that are not UTF-8 become U+FFFD, which the key check then names
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except FileNotFoundError:
        return None  # like an unset variable: the profile fails over, models list says so
    except OSError as exc:
        table.fail("api_key_file", f"cannot read {path}: {exc.strerror}")
