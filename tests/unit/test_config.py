"""The config file: defaults, every value checked, mistakes located by file, line and key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from clawgate.config import DEFAULT_CONFIG, home_from_env, load, parse
from clawgate.domain import DropPolicy, ModelRef, QueueMode
from clawgate.errors import ConfigError
from clawgate.providers.settings import (
    EchoConfig,
    EchoFailure,
    HttpProviderSettings,
    Profile,
    ProviderKind,
    TokenLimitField,
)

PATH = Path("/home/me/.clawgate/config.toml")
MODEL_O = '[models]\ndefault = "o/m"\n'


def _parse(text: str) -> object:
    return parse(text, PATH, PATH.parent)


def test_the_default_config_gives_the_documented_defaults() -> None:
    settings = parse(DEFAULT_CONFIG, PATH, PATH.parent)
    assert settings.runtime.default_model == ModelRef("echo", "echo")
    assert settings.runtime.lease == timedelta(seconds=15)
    assert settings.runtime.run_timeout == timedelta(seconds=600)
    assert settings.runtime.queue.mode is QueueMode.COLLECT
    assert settings.runtime.queue.drop is DropPolicy.SUMMARIZE
    assert settings.runtime.routing.wait_retry_after_s == 5.0
    assert settings.database == PATH.parent / "clawgate.db"
    assert parse("", PATH, PATH.parent) == settings


def test_values_are_read() -> None:
    settings = parse(
        '[providers.slow]\nkind = "echo"\ndelay_ms = 250\nfail = "hang"\n'
        '[models]\ndefault = "slow/x"\n[runtime]\nlease_seconds = 4\n'
        '[queue]\nmode = "interrupt"\ncap = 3\n',
        PATH, PATH.parent,
    )
    slow = settings.providers[0]
    assert isinstance(slow, EchoConfig)
    assert (slow.delay_ms, slow.fail) == (250, EchoFailure.HANG)
    assert settings.runtime.default_model == ModelRef("slow", "x")
    assert settings.runtime.lease == timedelta(seconds=4)
    assert (settings.runtime.queue.mode, settings.runtime.queue.cap) == (QueueMode.INTERRUPT, 3)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("[runtime]\n\nlease_seconds = 0\n", 3, "runtime.lease_seconds", "between 1 and 3600"),
        ("[runtime]\nlease_seconds = true\n", 2, "runtime.lease_seconds", "a whole number"),
        ('[queue]\nmode = "fast"\n', 2, "queue.mode", "'fast' is not one of"),
        ('[queue]\ncapp = 3\n', 2, "queue.capp", "did you mean 'cap'"),
        ('[models]\ndefault = "gpt4"\n', 2, "models.default", "provider/model"),
        ('[models]\ndefault = "x/y"\n', 2, "models.default", "no provider named 'x'"),
        ('[providers.p]\nkind = "magic"\n', 2, "providers.p.kind",
         "'magic' is not one of 'echo', 'openai', 'anthropic'"),
        ('[providers.p]\nkind = "openai"\napi_key = "sk-x"\n', 3, "providers.p.api_key",
         "keys do not belong in the config file"),
        ('[providers.a]\nkind = "anthropic"\n', 1, "providers.a.api_key_env",
         "needs api_key_env or api_key_file"),  # a missing key: the line of its table
        ('[providers.o]\nkind = "openai"\n[[providers.o.profiles]]\nname = "a"\n'
         '[[providers.o.profiles]]\nname = "b"\ncolour = 1\n', 7,
         "providers.o.profiles[1].colour", "unknown key"),
        ('[models]\nfallbacks = ["nowhere/x"]\n', 2, "models.fallbacks", "no provider named"),
        ('runtime = 5\n', 1, "runtime", "expected a table"),
        ('[providers.e]\nkind = "echo"\nfail = "sometimes"\n', 3, "providers.e.fail",
         "not one of"),
        ('[providers.o]\nkind = "openai"\nmax_tokens_field = "limit"\n', 3,
         "providers.o.max_tokens_field", "not one of 'max_tokens', 'max_completion_tokens'"),
        ('[providers.o]\nkind = "openai"\nbase_url = "localhost:11434/v1"\n', 3,
         "providers.o.base_url", "must be a URL starting with http:// or https://"),
        ('[providers.o]\nkind = "openai"\n\nbase_url = "ftp://127.0.0.1/v1"\n', 4,
         "providers.o.base_url", "must be a URL starting with http:// or https://"),
        ('[providers.a]\nkind = "anthropic"\napi_key_env = "K"\nstream_usage = false\n', 4,
         "providers.a.stream_usage", "only openai providers take stream_usage"),
        ('[providers.o]\nkind = "openai"\nstream_usage = "no"\n', 3,
         "providers.o.stream_usage", "expected true or false"),
        # dotted keys, inline tables, quoted names, and look-alikes inside values
        ('[models]\ndefault = "echo/echo"\nruntime.lease_seconds = "x"\n', 3,
         "models.runtime", "unknown key"),
        ('\nruntime.lease_seconds = "x"\n', 2, "runtime.lease_seconds", "a whole number"),
        ('runtime . "lease_seconds" = 0\n', 1, "runtime.lease_seconds", "between 1 and"),
        ('[runtime]\nlease_seconds = 4\n[queue]\nmode = "collect"\n'
         'runtime = { lease_seconds = "x" }\n', 5, "queue.runtime", "unknown key"),
        ('\nruntime = { lease_seconds = "x" }\n', 2, "runtime.lease_seconds",
         "a whole number"),
        ('[providers]\necho = { kind = "echo", delay_ms = "slow" }\n', 2,
         "providers.echo.delay_ms", "a whole number"),
        ('[providers.e]\nkind = "echo"\n"fail" = "sometimes"\n', 3, "providers.e.fail",
         "not one of"),
        ('[ "runtime" ]\n\nlease_seconds = 0\n', 3, "runtime.lease_seconds",
         "between 1 and"),
        ('providers.a.kind = "anthropic"\n', 1, "providers.a.api_key_env",
         "needs api_key_env"),
        ('[agent]\nsystem_prompt = """\n[runtime]\nlease_seconds = 1\n"""\n'
         '[runtime]\nlease_seconds = 0\n', 7, "runtime.lease_seconds", "between 1 and"),
        ('[models]\nfallbacks = [\n  "echo/echo",\n]\ncolour = 1\n', 5, "models.colour",
         "unknown key"),
        ('[routing]\nwait_retry_after_seconds = "soon"\n', 2,
         "routing.wait_retry_after_seconds", "expected a number"),
        ('[routing]\nwait_retry_after_seconds = -1\n', 2,
         "routing.wait_retry_after_seconds", "between 0 and 60"),
        ('[runtime]\nrun_timeout_seconds = 1.5\n', 2, "runtime.run_timeout_seconds",
         "expected a whole number, got 1.5"),
        ('[models]\ndefault = "best"\n[models.aliases]\nbest = "good"\ngood = "echo/echo"\n',
         4, "models.aliases.best", "an alias points at a provider/model, not at another "
         "alias ('good')"),
        ('[models.aliases]\na = "b"\nb = "a"\n', 2, "models.aliases.a",
         "not at another alias ('b')"),
        ('[models.aliases]\n"echo/echo" = "echo/other"\n', 2, "models.aliases.echo/echo",
         'an alias is a short name without "/"'),
        ('[providers."a/b"]\nkind = "echo"\n', 1, "providers.a/b",
         "cannot be empty or hold \"/\" or spaces; got 'a/b'"),
        ('\n[providers.""]\nkind = "echo"\n', 2, "providers.",
         "cannot be empty or hold \"/\" or spaces; got ''"),
        ('[providers.o]\nkind = "openai"\nheaders = { Authorization = "Bearer sk-1" }\n', 3,
         "providers.o.headers.Authorization",
         "the Authorization header carries a key, and keys do not belong in the config file; "
         "put the key in an environment variable (api_key_env) or a file (api_key_file)"),
        ('[providers.a]\nkind = "anthropic"\napi_key_env = "K"\n[providers.a.headers]\n'
         '"X-API-Key" = "sk-1"\n', 5, "providers.a.headers.X-API-Key", "carries a key"),
        ('[providers.o]\nkind = "openai"\n\n[models]\nfallbacks = []\n', 4, "models.default",
         'no default model is set (without one, new sessions would use echo/echo, and no '
         'echo provider is configured): set [models] default = "o/<model>"'),
        ('[providers.o]\nkind = "openai"\n', None, "models.default",
         'set [models] default = "o/<model>"'),
    ],
)
def test_mistakes_name_file_line_and_key(
    text: str, line: int | None, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    error = caught.value
    assert (error.path, error.line, error.key) == (str(PATH), line, key)
    assert message in str(error)
    where = f", line {line}" if line else ""
    assert str(error).startswith(f"config error in {PATH}{where}, key {key}: ")


def test_broken_toml_names_its_line() -> None:
    with pytest.raises(ConfigError, match="line 2") as caught:
        _parse('[queue]\nmode = "collect\n')
    assert "not valid TOML" in str(caught.value)


def test_a_missing_home_is_created_with_a_commented_config(tmp_path: Path) -> None:
    home = tmp_path / "nested" / "home"
    settings = load(home)
    assert (home / "config.toml").read_text() == DEFAULT_CONFIG
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert settings.home == home


def test_a_config_file_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b'[agent]\n\nsystem_prompt = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path)
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "config.toml"), 3)
    assert "byte 0xe9 is not UTF-8 text" in str(caught.value)


def test_a_home_or_config_of_the_wrong_kind_is_named(tmp_path: Path) -> None:
    (tmp_path / "home-file").write_text("")
    (tmp_path / "home" / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"home-file is a file; it must be a folder"):
        load(tmp_path / "home-file")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "home")
    assert str(caught.value) == (f"config error in {tmp_path / 'home' / 'config.toml'}: "
                                 "this is a folder; it must be a file")


def test_the_home_comes_from_the_environment(tmp_path: Path) -> None:
    assert home_from_env({"CLAWGATE_HOME": str(tmp_path)}) == tmp_path
    assert home_from_env({}).name == ".clawgate"


def test_http_providers_profiles_keys_aliases_and_fallbacks(tmp_path: Path) -> None:
    key_file = tmp_path / "personal.key"
    key_file.write_text("sk-from-file\n")
    text = f"""
[models]
default = "smart"
fallbacks = ["local/llama3"]
[models.aliases]
smart = "anthropic/claude-sonnet"
fast = "openai/gpt-4o-mini"

[providers.openai]
kind = "openai"
models = ["gpt-4o-mini"]
[[providers.openai.profiles]]
name = "work"
api_key_env = "WORK_KEY"
[[providers.openai.profiles]]
name = "personal"
api_key_file = "{key_file}"
[[providers.openai.profiles]]
name = "spare"
api_key_env = "UNSET_KEY"

[providers.anthropic]
kind = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"
timeout_seconds = 30

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:11434/v1"

[agent]
system_prompt = "Be brief."

[routing]
retries = 1
cooldown_minutes = [0.5, 2]
overload_seconds = [5, 20]
wait_retry_after_seconds = 1.5
"""
    env = {"WORK_KEY": "sk-work", "ANTHROPIC_API_KEY": "sk-ant"}
    settings = parse(text, PATH, PATH.parent, env)
    by_name = {p.name: p for p in settings.providers}
    openai, anthropic, local = by_name["openai"], by_name["anthropic"], by_name["local"]
    assert isinstance(openai, HttpProviderSettings)
    assert [(p.name, p.api_key) for p in openai.profiles] == [
        ("work", "sk-work"), ("personal", "sk-from-file"), ("spare", None)]
    assert "sk-work" not in repr(openai)  # keys stay out of every repr
    assert isinstance(anthropic, HttpProviderSettings)
    assert (anthropic.kind, anthropic.timeout_seconds) == (ProviderKind.ANTHROPIC, 30)
    assert isinstance(local, HttpProviderSettings)
    assert (local.needs_key, local.base_url) == (False, "http://127.0.0.1:11434/v1")
    assert openai.limit_field is TokenLimitField.MAX_COMPLETION_TOKENS  # what api.openai.com wants
    assert local.limit_field is TokenLimitField.MAX_TOKENS  # what the compatible servers read
    spelled_out = parse('[providers.o]\nkind = "openai"\nbase_url = "https://api.openai.com/v1"\n'
                        '[models]\ndefault = "o/gpt-5"\n', PATH, PATH.parent, {})
    (written,) = spelled_out.providers
    assert isinstance(written, HttpProviderSettings)
    assert written.limit_field is TokenLimitField.MAX_COMPLETION_TOKENS
    runtime = settings.runtime
    assert runtime.default_model == ModelRef("anthropic", "claude-sonnet")
    assert runtime.routing.fallbacks == (ModelRef("local", "llama3"),)
    assert runtime.routing.aliases["fast"] == ModelRef("openai", "gpt-4o-mini")
    assert runtime.routing.cooldown_windows_s == (30.0, 120.0)
    assert runtime.routing.overload_windows_s == (5.0, 20.0)
    assert runtime.routing.wait_retry_after_s == 1.5
    assert runtime.system_prompt == "Be brief."


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("sk-secret\u00a0111", "U+00A0 NO-BREAK SPACE at position 10"),
        ("sk-ant-\u2019zz", "U+2019 RIGHT SINGLE QUOTATION MARK at position 8"),
        ("sk-a\u200bb", "U+200B ZERO WIDTH SPACE at position 5"),
        ("sk-a\nb", "U+000A at position 5"),
    ],
)
def test_a_key_http_cannot_carry_is_unusable_and_named_without_the_key(
    raw: str, problem: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(raw + "\n")
    text = f"""{MODEL_O}
[providers.o]
kind = "openai"
[[providers.o.profiles]]
name = "env"
api_key_env = "BAD_KEY"
[[providers.o.profiles]]
name = "file"
api_key_file = "{key_file}"
"""
    settings = parse(text, PATH, PATH.parent, {"BAD_KEY": raw})
    provider = settings.providers[0]
    assert isinstance(provider, HttpProviderSettings)
    for profile, source in zip(provider.profiles, ("env BAD_KEY", f"file {key_file}"),
                               strict=True):
        assert profile.api_key is None  # never sent
        assert profile.unusable == (f"the key in {source} contains a character that cannot "
                                    f"be sent ({problem})")
        assert raw not in profile.unusable
    assert provider.secrets() == []


def test_whitespace_around_a_key_is_dropped_not_refused(tmp_path: Path) -> None:
    text = MODEL_O + '[providers.o]\nkind = "openai"\napi_key_env = "K"\n'
    settings = parse(text, PATH, PATH.parent, {"K": "\u00a0 sk-good\t\u00a0\n"})
    provider = settings.providers[0]
    assert isinstance(provider, HttpProviderSettings)
    assert (provider.profiles[0].api_key, provider.profiles[0].unusable) == ("sk-good", None)


def _profiles(text: str, config_path: Path, env: dict[str, str] | None = None
              ) -> tuple[Profile, ...]:
    """The profiles of provider ``o``, as ``parse`` reads them."""
    provider = parse(MODEL_O + '[providers.o]\nkind = "openai"\n' + text, config_path,
                     config_path.parent, env).providers[0]
    assert isinstance(provider, HttpProviderSettings)
    return provider.profiles


def test_a_relative_key_file_is_read_from_the_config_file_s_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "k").write_text("sk-beside-the-config\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "keys").mkdir(parents=True)
    (elsewhere / "keys" / "k").write_text("sk-in-the-working-directory\n")
    monkeypatch.chdir(elsewhere)  # where a gateway happened to be started
    monkeypatch.setenv("HOME", str(home))
    text = ('[[providers.o.profiles]]\nname = "rel"\napi_key_file = "keys/k"\n'
            '[[providers.o.profiles]]\nname = "tilde"\napi_key_file = "~/keys/k"\n')
    assert [p.api_key for p in _profiles(text, home / "config.toml")] == [
        "sk-beside-the-config", "sk-beside-the-config"]


def test_a_key_that_is_not_there_says_why_for_a_file_and_a_variable(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text(" \n")
    text = "".join(f'[[providers.o.profiles]]\nname = "p{n}"\n{source}\n' for n, source in
                   enumerate(('api_key_file = "gone"', 'api_key_file = "empty"',
                              'api_key_env = "UNSET"', 'api_key_env = "BLANK"')))
    profiles = _profiles(text, tmp_path / "config.toml", {"BLANK": ""})
    assert [(p.api_key, p.missing) for p in profiles] == [
        (None, f"file {tmp_path / 'gone'} does not exist"),
        (None, f"file {tmp_path / 'empty'} is empty"),
        (None, "env UNSET is not set"), (None, "env BLANK is empty")]


def test_stream_usage_is_on_unless_turned_off() -> None:
    on, off = (parse(f'{MODEL_O}[providers.o]\nkind = "openai"\n{extra}', PATH,
                     PATH.parent).providers[0] for extra in ("", "stream_usage = false\n"))
    assert isinstance(on, HttpProviderSettings)
    assert isinstance(off, HttpProviderSettings)
    assert (on.stream_usage, off.stream_usage) == (True, False)


def test_the_fingerprint_tells_another_file_or_other_keys_and_holds_no_key() -> None:
    text = ('[models]\ndefault = "o/m"\n[providers.o]\nkind = "openai"\n'
            'api_key_env = "K"\n')
    first = parse(text, PATH, PATH.parent, {"K": "sk-first-key"}).fingerprint
    same = parse(text, PATH, PATH.parent, {"K": "sk-first-key", "OTHER": "x"}).fingerprint
    other_key = parse(text, PATH, PATH.parent, {"K": "sk-second-key"}).fingerprint
    no_key = parse(text, PATH, PATH.parent, {}).fingerprint
    edited = parse(text + "timeout_seconds = 60\n", PATH, PATH.parent,
                   {"K": "sk-first-key"}).fingerprint

    assert first.change(same) is None
    assert first.change(other_key) == "keys"
    assert first.change(no_key) == "keys"
    assert first.change(edited) == "config.toml"
    assert "sk-first-key" not in repr(first)
