"""The CLI with real providers: an OpenAI-compatible and an Anthropic endpoint on 127.0.0.1.

Keys come from the environment; the test greps everything the user and the disk can see
for them.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from clawgate.testing.model_server import Fail, FakeModelServer, Reply
from tests.acceptance.cli import Home

WORK_KEY = "sk-work-5f3a9c1e7d2b4a6f8e0c"
CLAUDE_KEY = "sk-ant-a1b2c3d4e5f6a7b8c9d0"
CHAT_LINES = "hello\n/status\n/model\n/model smart\n/compact\nagain\n"


def _config(server: FakeModelServer) -> str:
    return f"""
[models]
default = "openai/gpt-test"
fallbacks = ["claude/claude-test"]
[models.aliases]
smart = "claude/claude-test"

[providers.openai]
kind = "openai"
base_url = "{server.openai_base_url}"
timeout_seconds = 5
models = ["gpt-test"]
[[providers.openai.profiles]]
name = "work"
api_key_env = "TEST_WORK_KEY"
[[providers.openai.profiles]]
name = "spare"
api_key_env = "TEST_SPARE_KEY"

[providers.claude]
kind = "anthropic"
base_url = "{server.url}"
api_key_env = "TEST_CLAUDE_KEY"

[queue]
mode = "followup"
debounce_ms = 0
"""


@pytest.fixture
def home_with_models(home: Home, server: FakeModelServer,
                     monkeypatch: pytest.MonkeyPatch) -> Home:
    (home.path / "config.toml").write_text(_config(server))
    monkeypatch.setenv("TEST_WORK_KEY", WORK_KEY)
    monkeypatch.setenv("TEST_CLAUDE_KEY", CLAUDE_KEY)
    monkeypatch.delenv("TEST_SPARE_KEY", raising=False)
    return home


def test_agent_answers_through_an_openai_compatible_endpoint(
    home_with_models: Home, server: FakeModelServer
) -> None:
    server.script(Reply("Hello from the model", cached_tokens=3))
    done = home_with_models.run("agent", "-m", "hi")
    assert (done.returncode, done.stdout) == (0, "Hello from the model\n"), done.stderr
    assert server.exchanges[-1].api_key == WORK_KEY
    run = home_with_models.json("sessions", "show", "main")["runs"][-1]
    assert (run["modelProvider"], run["model"], run["profile"]) == ("openai", "gpt-test", "work")
    assert run["cachedTokens"] == 3


def test_sessions_show_text_names_the_profile_every_candidate_tried_and_cached_tokens(
    home_with_models: Home, server: FakeModelServer
) -> None:
    server.on_key(WORK_KEY, Fail(429, "slow down", retry_after=300))
    server.on_key(CLAUDE_KEY, Reply("Hello from Claude", input_tokens=40, output_tokens=5,
                                    cached_tokens=32))
    assert home_with_models.run("agent", "-m", "hi").returncode == 0
    shown = home_with_models.run("sessions", "show", "main")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "tokens   40 in (32 of them cached), 5 out" in lines
    [run_line] = [line.split() for line in lines if line.startswith("run_")][:1]
    assert run_line[1] == "done"
    assert run_line[-4:-1] == ["claude/claude-test", "default", "40/5/32"]
    start = lines.index("candidates tried, in order:")
    header = lines[start + 1]
    cuts = [header.index(name) for name in ("MODEL", "PROFILE", "OUTCOME", "WHY")]
    tried = [[line[a:b].strip() for a, b in zip(cuts, [*cuts[1:], None], strict=True)]
             for line in lines[start + 2:start + 5]]
    assert [t[:3] for t in tried] == [
        ["openai/gpt-test", "work", "rate_limited"],
        ["openai/gpt-test", "spare", "not_configured"],
        ["claude/claude-test", "default", "answered"]]
    assert "slow down (HTTP 429)" in tried[0][3]
    assert "env TEST_SPARE_KEY is not set" in tried[1][3]


def test_no_key_appears_in_any_output_log_error_or_stored_row(
    home_with_models: Home, server: FakeModelServer
) -> None:
    # The provider echoes the key back in its error, as some do.
    server.on_key(WORK_KEY, Fail(401, f"Incorrect API key provided: {WORK_KEY}"))
    server.on_key(CLAUDE_KEY, Fail(500, f"upstream rejected {CLAUDE_KEY}"))
    outputs = [
        home_with_models.run("-vv", "agent", "-m", "hello"),
        home_with_models.run("-vv", "agent", "-m", "again", "--json"),
        home_with_models.run("sessions", "show", "main", "--json"),
        home_with_models.run("sessions", "show", "main"),
        home_with_models.run("models", "list", "--json"),
        home_with_models.run("models", "list"),
        home_with_models.run("-vv", "models", "test"),
        home_with_models.run("-vv", "models", "test", "smart", "--json"),
        home_with_models.run("doctor", "--json"),
        home_with_models.run("-vv", "chat", stdin=CHAT_LINES),
        home_with_models.run("-vv", "chat", "--session", "other", stdin=CHAT_LINES),
    ]
    assert outputs[0].returncode == 1
    assert "[redacted]" in outputs[0].stderr
    chat = outputs[-2]
    assert chat.returncode == 0, chat.stderr
    assert "[redacted]" in chat.stdout  # the provider's error is shown, without the key
    for done in outputs:
        assert WORK_KEY not in done.stdout + done.stderr
        assert CLAUDE_KEY not in done.stdout + done.stderr
    database = home_with_models.path / "clawgate.db"
    dump = "\n".join(sqlite3.connect(database).iterdump())
    assert WORK_KEY not in dump
    assert CLAUDE_KEY not in dump
    assert "Incorrect API key provided: [redacted]" in dump  # the error itself is kept


def test_an_unset_key_is_skipped_without_rest_and_used_once_it_is_set(
    home_with_models: Home, server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_WORK_KEY")
    monkeypatch.setenv("TEST_SPARE_KEY", "sk-spare-0a1b2c3d4e5f")
    skipped = home_with_models.run("agent", "-m", "hi")
    assert skipped.returncode == 0, skipped.stderr
    run = home_with_models.json("sessions", "show", "main")["runs"][-1]
    assert run["profile"] == "spare"
    [work, spare] = run["attempts"]
    assert (work["profile"], work["outcome"]) == ("work", "not_configured")
    assert "TEST_WORK_KEY is not set" in work["error"]
    assert spare["outcome"] == "answered"
    openai = next(p for p in home_with_models.json("models", "list")["providers"]
                  if p["name"] == "openai")
    assert [p["restingUntil"] for p in openai["profiles"]] == [None, None]

    monkeypatch.setenv("TEST_WORK_KEY", WORK_KEY)
    used = home_with_models.run("agent", "-m", "and now?")
    assert used.returncode == 0, used.stderr
    assert server.exchanges[-1].api_key == WORK_KEY
    assert home_with_models.json("sessions", "show", "main")["runs"][-1]["profile"] == "work"


def test_a_relative_key_file_is_read_beside_the_config_and_a_missing_one_is_named(
    home_with_models: Home, server: FakeModelServer
) -> None:
    config = home_with_models.path / "config.toml"
    config.write_text(config.read_text().replace('api_key_env = "TEST_SPARE_KEY"',
                                                 'api_key_file = "keys/spare"'))
    key_file = home_with_models.path / "keys" / "spare"
    server.on_key(WORK_KEY, Fail(401, "bad key"))
    tested = home_with_models.run("models", "test", "--json")
    spare = json.loads(tested.stdout)[1]
    assert spare["error"] == (
        f"openai: no API key for profile 'spare' (file {key_file} does not exist)")

    key_file.parent.mkdir()
    key_file.write_text("sk-spare-9f8e7d6c5b4a\n")
    answered = home_with_models.run("agent", "-m", "hi")  # started in another folder
    assert answered.returncode == 0, answered.stderr
    assert server.exchanges[-1].api_key == "sk-spare-9f8e7d6c5b4a"


@pytest.mark.parametrize("via", ["in-process", "gateway"])
def test_a_chat_command_that_fails_says_why_and_the_chat_goes_on(
    home_with_models: Home, server: FakeModelServer, via: str
) -> None:
    server.on_model("badreq", Fail(400, "this request is malformed"))
    if via == "gateway":
        home_with_models.start_gateway()
    first = home_with_models.run("chat", stdin="hello\n")
    assert "reply to: hello" in first.stdout, first.stderr
    done = home_with_models.run(
        "chat", stdin="/model openai/badreq\n/compact\n/status\nstill here?\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "! /compact failed: " in out
    assert "this request is malformed (HTTP 400)" in out
    assert "model     openai/badreq" in out  # /status, after the failure
    assert "[failed: openai: this request is malformed (HTTP 400)]" in out  # "still here?"
    assert "Traceback" not in done.stderr


def test_models_list_shows_profiles_keys_and_what_rests(
    home_with_models: Home, server: FakeModelServer
) -> None:
    server.on_key(WORK_KEY, Fail(429, "slow down", retry_after=300))
    server.on_key(CLAUDE_KEY, Fail(401, "bad key"))
    home_with_models.run("agent", "-m", "hi")
    listing = home_with_models.json("models", "list")
    assert listing["default"] == "openai/gpt-test"
    assert listing["fallbacks"] == ["claude/claude-test"]
    assert listing["aliases"] == {"smart": "claude/claude-test"}
    providers = {p["name"]: p for p in listing["providers"]}
    work, spare = providers["openai"]["profiles"]
    assert (work["key"], spare["key"]) == ("set", "missing")
    assert work["restingUntil"] is None  # a rate limit rests the model, not the key
    [limited] = work["restingModels"]
    assert limited["model"] == "gpt-test"
    assert limited["until"] is not None
    assert "rate_limited" in limited["reason"]
    [claude] = providers["claude"]["profiles"]
    assert claude["restingUntil"] is not None  # a refused key rests for every model
    assert "auth" in claude["restReason"]
    assert claude["restingModels"] == []
    text = home_with_models.run("models", "list").stdout
    assert "spare (env TEST_SPARE_KEY: missing)" in text
    assert "work (env TEST_WORK_KEY: set), gpt-test resting until 20" in text
    assert "default (env TEST_CLAUDE_KEY: set) resting until 20" in text


def test_models_list_shows_what_rests_on_the_echo_provider(home: Home) -> None:
    home.configure(fail="auth")
    assert home.run("agent", "-m", "hi").returncode == 1  # the key was "refused": it rests
    [echo] = home.json("models", "list")["providers"]
    [profile] = echo["profiles"]
    assert profile["restingUntil"] is not None
    assert "auth" in profile["restReason"]
    assert "default (no key needed) resting until 20" in home.run("models", "list").stdout


def test_models_test_gives_up_on_a_hanging_model_at_its_deadline(home: Home) -> None:
    home.configure(fail="hang")
    tested = home.run("models", "test", "--timeout", "1", timeout=30)
    assert tested.returncode == 1
    assert tested.stdout == ("echo/echo via default: FAILED (timeout): no complete answer "
                             "within 1 s (--timeout sets how long to wait)\n")


def test_a_rest_says_how_to_try_now_and_models_test_clears_it(home: Home) -> None:
    home.configure(fail="auth")
    assert home.run("agent", "-m", "hi").returncode == 1
    resting = home.run("agent", "-m", "hi")
    assert resting.returncode == 1
    assert "every candidate is resting after failures; echo:default is back at " in resting.stderr
    assert ("`clawgate models test echo/echo` tries it now and clears the rest if it answers"
            in resting.stderr)

    home.configure()  # the problem is fixed
    tested = home.run("models", "test", "echo/echo")
    assert tested.returncode == 0, tested.stderr
    assert home.json("models", "list")["providers"][0]["profiles"][0]["restingUntil"] is None
    answered = home.run("agent", "-m", "back?")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.endswith("back?\n")  # after the messages no run answered


def test_a_refused_key_stops_resting_once_the_key_is_changed(
    home_with_models: Home, server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = "sk-work-old-0123456789ab"
    monkeypatch.setenv("TEST_WORK_KEY", old)
    monkeypatch.setenv("TEST_SPARE_KEY", "sk-spare-refused-0123")
    for key in (old, "sk-spare-refused-0123", CLAUDE_KEY):
        server.on_key(key, Fail(401, "invalid key"))
    assert home_with_models.run("agent", "-m", "hi").returncode == 1  # every key rests
    assert "every candidate is resting" in home_with_models.run("agent", "-m", "hi").stderr

    monkeypatch.setenv("TEST_WORK_KEY", WORK_KEY)  # the user fixes the key
    openai = home_with_models.json("models", "list")["providers"][0]
    work, spare = openai["profiles"]
    assert (work["restingUntil"], spare["restingUntil"] is not None) == (None, True)
    answered = home_with_models.run("agent", "-m", "and now?")
    assert answered.returncode == 0, answered.stderr
    assert server.exchanges[-1].api_key == WORK_KEY
    dump = "\n".join(sqlite3.connect(home_with_models.path / "clawgate.db").iterdump())
    assert old not in dump  # only a fingerprint of the key is kept


def test_models_test_reports_latency_and_reply_or_the_failure(
    home_with_models: Home, server: FakeModelServer
) -> None:
    server.on_model("claude-test", Reply("OK"))
    passed = home_with_models.run("models", "test", "smart")
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith("claude/claude-test via default: first token ")
    assert "said 'OK'" in passed.stdout

    server.on_key(WORK_KEY, Fail(401, "invalid key"))
    failed = home_with_models.run("models", "test", "--json")
    assert failed.returncode == 1
    results = json.loads(failed.stdout)
    assert [(r["profile"], r["ok"], r.get("errorKind")) for r in results] == [
        ("work", False, "auth"), ("spare", False, "not_configured")]
    assert "TEST_SPARE_KEY is not set" in results[1]["error"]
    unknown = home_with_models.run("models", "test", "nowhere/x")
    assert unknown.returncode == 2
    assert "no provider named 'nowhere'" in unknown.stderr


def test_a_key_with_a_character_http_cannot_carry_is_named_and_skipped_at_once(
    home_with_models: Home, server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pasted = WORK_KEY[:9] + "\u00a0" + WORK_KEY[9:]  # a non-breaking space came with it
    monkeypatch.setenv("TEST_WORK_KEY", pasted)
    reason = ("unusable API key for profile 'work': the key in env TEST_WORK_KEY contains a "
              "character that cannot be sent (U+00A0 NO-BREAK SPACE at position 10)")
    tested = home_with_models.run("models", "test")
    assert tested.returncode == 1
    assert tested.stdout.splitlines()[0] == (
        f"openai/gpt-test via work: FAILED (not_configured): openai: {reason}")

    answered = home_with_models.run("agent", "-m", "hi")
    assert answered.returncode == 0, answered.stderr
    run = home_with_models.json("sessions", "show", "main")["runs"][-1]
    assert [(a["profile"], a["outcome"]) for a in run["attempts"]] == [  # no retries
        ("work", "not_configured"), ("spare", "not_configured"), ("default", "answered")]
    assert reason in run["attempts"][0]["error"]
    assert [e.model for e in server.exchanges] == ["claude-test"]
    listed = home_with_models.run("models", "list")
    assert "work (env TEST_WORK_KEY: unusable)" in listed.stdout
    for done in (tested, answered, listed):
        assert WORK_KEY[9:] not in done.stdout + done.stderr


def test_a_log_line_carrying_a_key_is_redacted_on_stderr(
    home_with_models: Home, server: FakeModelServer
) -> None:
    # At -vv the Anthropic SDK logs every request it sends, the conversation included, so a
    # key pasted into the chat is in that log line.
    assert home_with_models.run("agent", "-m", "/model smart").returncode == 0
    server.script(Reply("noted"))

    done = home_with_models.run("-vv", "agent", "-m", f"is this my key? {CLAUDE_KEY}")

    assert (done.returncode, done.stdout) == (0, "noted\n"), done.stderr
    [logged] = [line for line in done.stderr.splitlines() if "Request options" in line]
    assert "is this my key? [redacted]" in logged
    assert CLAUDE_KEY not in done.stderr
