"""The CLI with a running gateway: every command goes through it, and says so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest

from tests.acceptance.cli import Home, wait_until

pytestmark = pytest.mark.slow

NOTE_GATEWAY = "(via the gateway at "
NOTE_LOCAL = "(in-process: no gateway is running)\n"


@pytest.fixture
def gateway(home: Home) -> subprocess.Popen[str]:
    home.configure(lease=15)
    process, _ = home.start_gateway()
    return process


def test_agent_sessions_and_chat_go_through_the_gateway(
    home: Home, gateway: subprocess.Popen[str]
) -> None:
    answered = home.run("agent", "--session", "s1", "-m", "hello gateway")
    assert (answered.returncode, answered.stdout) == (0, "echo: hello gateway\n")
    assert NOTE_GATEWAY in answered.stderr

    again = home.json("agent", "--session", "s1", "-m", "hello gateway", "--id", "x-1")
    repeat = home.json("agent", "--session", "s1", "-m", "hello gateway", "--id", "x-1")
    assert repeat["runId"] == again["runId"]

    listed = home.run("sessions", "list", "--json")
    assert NOTE_GATEWAY in listed.stderr
    assert [row["key"] for row in json.loads(listed.stdout)] == ["s1"]
    shown = home.json("sessions", "show", "s1")
    assert len(shown["runs"]) == 2
    missing = home.run("sessions", "show", "nope", "--json")
    assert (missing.returncode, missing.stdout) == (2, "")  # as in-process
    assert "no session with key 'nope'" in missing.stderr
    too_many = home.run("sessions", "show", "s1", "--limit", "2000")  # as in-process
    assert (too_many.returncode, too_many.stdout) == (2, "")
    assert "--limit: expected a whole number from 1 to 1000" in too_many.stderr

    chatted = home.run("chat", "--session", "s2", stdin="stop\n/new\nfirst line\n/status\n")
    assert chatted.returncode == 0
    assert NOTE_GATEWAY in chatted.stderr
    assert "session s2 has no conversation yet: nothing was running" in chatted.stdout
    assert "'s2' has no conversation yet" in chatted.stdout
    assert "echo: first line" in chatted.stdout
    assert "model     echo/echo" in chatted.stdout
    status = home.json("agent", "--session", "s2", "-m", "/status")
    assert (status["session"], status["command"]) == ("s2", "/status")
    assert "model     echo/echo" in status["reply"]
    cut = home.run("sessions", "list", "--limit", "1")  # as in-process
    assert cut.stdout.endswith("\n(showing 1 of 2 sessions; --limit N shows up to 5000)\n")


def test_stop_through_the_gateway_ends_a_hanging_run(home: Home) -> None:
    gateway, _, agent = _gateway_with_a_hanging_run(home)
    stopped = home.json("stop", "--session", "s1")
    assert (stopped["status"], stopped["confirmed"]) == ("killed", True)
    assert agent.wait(10) == 3
    typo = home.run("stop", "--session", "s-one")
    assert (typo.returncode, typo.stdout) == (2, "")
    assert "there is no session 's-one'" in typo.stderr
    assert NOTE_GATEWAY in typo.stderr
    assert gateway.poll() is None  # the gateway carries on


def test_stop_json_has_one_shape_with_or_without_a_gateway(home: Home) -> None:
    home.run("agent", "--session", "s1", "-m", "hi")
    local = [json.loads(home.run("stop", "--session", key, "--json").stdout)
             for key in ("s1", "s-one")]
    home.start_gateway()
    remote = [home.run("stop", "--session", key, "--json") for key in ("s1", "s-one")]

    assert all(NOTE_GATEWAY in done.stderr for done in remote)
    shown = [json.loads(done.stdout) for done in remote]
    assert [set(row) for row in shown] == [set(row) for row in local]
    assert [row["session"] for row in shown] == ["s1", "s-one"]
    assert [row["sessionExists"] for row in shown] == [True, False]
    assert (shown[0]["outcome"], shown[0]["droppedMessages"]) == ("no_run", [])
    assert shown[0]["recoveredRuns"] is None  # the gateway frees such runs on its own


def test_a_message_over_the_limit_is_refused_before_it_is_sent_as_in_process(
    home: Home,
) -> None:
    """However far over (past the gateway's frame limits too): the same line, exit 2."""
    sizes = (40_000, 600_000, 2_097_152, 20_000_000)  # the second: 1.2 MB as UTF-8
    local = [home.run("agent", "-m", "-", stdin="é" * size) for size in sizes]
    home.start_gateway()
    remote = [home.run("agent", "-m", "-", stdin="é" * size) for size in sizes]
    chatted = home.run("chat", stdin="x" * 2_097_152 + "\nafter\n")

    for size, done in zip(sizes * 2, local + remote, strict=True):
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert done.stderr.endswith(
            f"clawgate: the message has {size} characters; the limit is 32000\n")
    assert chatted.returncode == 0
    assert "! the message has 2097152 characters; the limit is 32000\n" in chatted.stdout
    assert "echo: after" in chatted.stdout
    assert [m["text"] for m in home.json("sessions", "show", "main")["inbound"]] == ["after"]


def test_without_a_gateway_the_cli_says_it_works_in_process(home: Home) -> None:
    done = home.run("agent", "-m", "hi")
    assert done.returncode == 0
    assert NOTE_LOCAL in done.stderr
    (home.path / "gateway.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9", "pid": 999_999_999}))
    stale = home.run("agent", "-m", "hi again")  # a crashed gateway's leftover file
    assert stale.returncode == 0
    assert NOTE_LOCAL in stale.stderr


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("(")]


def test_a_gateway_that_does_not_answer_is_named_in_one_line_and_the_cli_works_in_process(
    home: Home, gateway: subprocess.Popen[str]
) -> None:
    url = json.loads((home.path / "gateway.json").read_text())["url"]
    os.kill(gateway.pid, signal.SIGSTOP)  # alive, registered, but answering nothing
    try:
        stalled = home.run("agent", "--session", "g1", "-m", "hi")
    finally:
        os.kill(gateway.pid, signal.SIGCONT)
    assert (stalled.returncode, stalled.stdout) == (0, "echo: hi\n")
    [note] = _notes(stalled.stderr)
    assert note.startswith(f"(in-process: cannot reach the gateway at {url}: ")

    token = home.path / "gateway.token"
    token.rename(home.path / "token-aside")
    without_token = home.run("agent", "--session", "g1", "-m", "hi again")
    assert without_token.returncode == 0
    assert _notes(without_token.stderr) == [
        f"(in-process: the gateway at {url} needs the token, which cannot be read from "
        f"{token} (No such file or directory))"]


def test_a_second_gateway_on_the_same_home_refuses_and_the_first_keeps_serving(
    home: Home, gateway: subprocess.Popen[str]
) -> None:
    url = json.loads((home.path / "gateway.json").read_text())["url"]
    second = home.run("gateway", "--port", "0", timeout=20)
    assert (second.returncode, second.stdout) == (1, "")
    assert second.stderr == (f"clawgate: a gateway is already running for {home.path}: {url} "
                             f"(pid {gateway.pid}); stop it first to start another here\n")
    assert json.loads((home.path / "gateway.json").read_text())["pid"] == gateway.pid
    answered = home.run("agent", "-m", "still there?")
    assert answered.returncode == 0
    assert f"(via the gateway at {url})" in answered.stderr


def test_a_copied_home_uses_its_own_database_not_the_original_s_gateway(
    home: Home, gateway: subprocess.Popen[str]
) -> None:
    shutil.copytree(home.path, home.path.parent / "copied-home")  # gateway.json included:
    copy = Home(home.path.parent / "copied-home")  # it names the original's gateway

    done = copy.run("agent", "--session", "only-in-copy", "-m", "hi")

    assert done.returncode == 0, done.stderr
    assert NOTE_LOCAL in done.stderr
    assert [r["key"] for r in copy.json("sessions", "list")] == ["only-in-copy"]
    assert "only-in-copy" not in [r["key"] for r in home.json("sessions", "list")]


@pytest.mark.parametrize("pid", [999_999_999, os.getpid()], ids=["dead", "reused"])
def test_a_file_left_by_a_crashed_gateway_does_not_block_a_start(home: Home, pid: int) -> None:
    """The pid in it is gone, or (after a reboot) some other program's: nothing listens."""
    state = home.path / "gateway.json"
    state.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": pid}))
    gateway = home.start("gateway", "--port", "0")
    wait_until(lambda: json.loads(state.read_text())["pid"] == gateway.pid, 20,
               "the gateway to start", gateway)
    assert NOTE_GATEWAY in home.run("agent", "-m", "hi").stderr


def test_a_port_in_use_is_named_and_nothing_starts(home: Home) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = home.run("gateway", "--port", str(port), timeout=20)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"clawgate: port {port} on 127.0.0.1 is in use (another gateway? "
                           "`clawgate gateway --port N` picks another)\n")
    assert not (home.path / "gateway.json").exists()
    assert not (home.path / "clawgate.db").exists()  # nothing was opened


def test_an_id_means_the_same_message_with_or_without_a_gateway(home: Home) -> None:
    home.configure(lease=15)
    first = home.json("agent", "--session", "s1", "-m", "pay the bill", "--id", "bill-1")
    home.start_gateway()
    again = home.run("agent", "--session", "s1", "-m", "pay the bill", "--id", "bill-1")
    elsewhere = home.json("agent", "--session", "s2", "-m", "other", "--id", "bill-1")

    assert NOTE_GATEWAY in again.stderr
    assert "was sent before" in again.stderr
    assert again.returncode == 0
    assert len(home.json("sessions", "show", "s1")["inbound"]) == 1
    assert elsewhere["runId"] != first["runId"]  # another session: another message
    empty = home.run("agent", "--session", "s1", "-m", "")
    assert empty.returncode == 2  # bad input, as in-process
    assert "empty" in empty.stderr


def test_sigterm_lets_the_gateway_record_a_hanging_run_as_interrupted(home: Home) -> None:
    gateway, _, agent = _gateway_with_a_hanging_run(home)
    gateway.send_signal(signal.SIGTERM)
    assert agent.wait(20) == 5  # the agent was told how its run ended: interrupted
    assert gateway.wait(20) == 0
    _, said = gateway.communicate(timeout=5)
    assert "stopping: turns in progress get 5 s to finish" in said
    assert "clawgate gateway stopped" in said
    assert not (home.path / "gateway.json").exists()
    run = home.latest_run("s1")
    assert run is not None
    assert run["status"] == "interrupted"
    assert run["error"] == (f"the gateway (pid {gateway.pid}) shut down before the reply "
                            "was complete")
    assert home.run("doctor").returncode == 0


def test_an_agent_whose_gateway_stops_while_its_message_waits_says_how_to_get_the_answer(
    home: Home,
) -> None:
    gateway, _, first = _gateway_with_a_hanging_run(home, grace=1)
    waiting = home.start("agent", "--session", "s1", "-m", "and then?", "--json")
    wait_until(lambda: len(home.json("sessions", "show", "s1")["inbound"]) == 2, 15,
               "the second message to be accepted", waiting)

    gateway.send_signal(signal.SIGTERM)
    assert first.wait(20) == 5  # its run was interrupted: that is its outcome
    shown, said = waiting.communicate(timeout=20)

    assert waiting.returncode == 7, said  # neither failed nor interrupted: not known yet
    message_id = home.json("sessions", "show", "s1")["inbound"][1]["id"]
    assert (f"clawgate: the gateway shut down while message {message_id} was waiting its "
            "turn; it is kept, and answered when the gateway is back. To see its outcome "
            "without sending it twice: run the same command again with --id cli-") in said
    lost = json.loads(shown)
    key = lost["id"]
    assert said.rstrip().endswith(f"--id {key}")
    assert (lost["messageId"], lost["fate"], lost["runId"]) == (message_id, "pending", None)
    assert f"clawgate: {lost['error']}" in said
    assert gateway.wait(20) == 0
    home.configure(grace=1)  # the model answers again
    home.start_gateway()
    again = home.run("agent", "--session", "s1", "-m", "and then?", "--id", key)
    assert again.returncode == 0, again.stderr
    assert "was sent before; showing its outcome" in again.stderr
    assert again.stdout.endswith("and then?\n")
    outcome = home.json("agent", "--session", "s1", "-m", "and then?", "--id", key)
    assert set(outcome) == set(lost)  # the outcome's shape, known or not
    assert [m["text"] for m in home.json("sessions", "show", "s1")["inbound"]] == [
        "hang", "and then?"]  # not sent twice


def test_an_agent_whose_gateway_dies_mid_reply_says_the_reply_was_cut_off(home: Home) -> None:
    home.configure(fail="hang")
    gateway, _ = home.start_gateway()
    agent = home.start("agent", "--session", "s1", "-m", "hang", "--json", "--id", "h-1")
    wait_until(lambda: (home.latest_run("s1") or {}).get("status") == "running", 15,
               "the run to start", agent)

    gateway.kill()
    gateway.wait(10)
    shown, said = agent.communicate(timeout=20)

    assert agent.returncode == 7, said
    run = home.latest_run("s1")
    assert run is not None
    message_id = home.json("sessions", "show", "s1")["inbound"][0]["id"]
    assert said.endswith(
        f"clawgate: the connection to the gateway was lost while message {message_id} was "
        f"being answered (run {run['id']}); its reply is cut off, and the run ends "
        "interrupted. `clawgate sessions show s1` shows what became of it; to have it "
        "answered, send it again with another --id (h-1 is taken)\n")
    lost = json.loads(shown)
    assert (lost["id"], lost["runId"], lost["status"]) == ("h-1", run["id"], "running")
    home.configure()  # the model answers again
    home.start_gateway()
    wait_until(lambda: (home.latest_run("s1") or {}).get("status") == "interrupted", 15,
               "the run to be recovered")
    again = home.run("agent", "--session", "s1", "-m", "hang on", "--id", "h-2")
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith("hang on\n")


def test_a_second_ctrl_c_ends_turns_at_once_and_still_records_them(home: Home) -> None:
    gateway, url, _ = _gateway_with_a_hanging_run(home, grace=120)
    gateway.send_signal(signal.SIGINT)
    wait_until(lambda: not _ready(url), 10, "the gateway to stop taking messages", gateway)
    gateway.send_signal(signal.SIGINT)
    assert gateway.wait(20) == 0  # well before the 120 s grace period
    _, said = gateway.communicate(timeout=5)
    assert "stopping now: turns in progress end as interrupted" in said
    assert "Traceback" not in said
    assert not (home.path / "gateway.json").exists()
    run = home.latest_run("s1")
    assert run is not None
    assert run["status"] == "interrupted"
    assert home.run("doctor").returncode == 0


def test_the_token_is_made_once_kept_private_and_shown(home: Home) -> None:
    gateway, _ = home.start_gateway()
    token_file = home.path / "gateway.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text().strip()
    assert len(token) >= 40
    shown = home.run("gateway", "token")
    assert (shown.returncode, shown.stdout.strip()) == (0, token)
    assert home.run("agent", "-m", "hi").returncode == 0  # the CLI finds and uses it

    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(20) == 0
    home.start_gateway()
    assert token_file.read_text().strip() == token  # a restart keeps it


def test_a_token_file_left_readable_by_others_is_made_private(home: Home) -> None:
    token_file = home.path / "gateway.token"
    token_file.write_text("a-token-from-before\n")
    token_file.chmod(0o644)  # as an older clawgate, a copy or an editor may leave it

    shown = home.run("gateway", "token")

    assert (shown.returncode, shown.stdout) == (0, "a-token-from-before\n")
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"


def test_without_a_token_only_loopback_is_allowed(home: Home) -> None:
    with (home.path / "config.toml").open("a") as config:
        config.write('\n[gateway]\nauth = "none"\n')

    refused = home.run("gateway", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2  # a configuration error, as if it were in the file
    assert "refusing to listen on 0.0.0.0 without a token" in refused.stderr
    assert "gateway.auth" in refused.stderr
    assert not (home.path / "gateway.json").exists()

    home.start_gateway()  # loopback: allowed, and no token is asked for
    answered = home.run("agent", "-m", "hi")
    assert (answered.returncode, answered.stdout) == (0, "echo: hi\n")
    assert NOTE_GATEWAY in answered.stderr
    assert not (home.path / "gateway.token").exists()
    no_token = home.run("gateway", "token")
    assert (no_token.returncode, no_token.stdout) == (1, "")
    assert "needs no token" in no_token.stderr
    assert not (home.path / "gateway.token").exists()


def _gateway_with_a_hanging_run(
    home: Home, grace: int = 5,
) -> tuple[subprocess.Popen[str], str, subprocess.Popen[str]]:
    """A gateway, and an agent whose run (on session s1) hangs until something ends it."""
    home.configure(fail="hang", grace=grace)
    gateway, url = home.start_gateway()
    agent = home.start("agent", "--session", "s1", "-m", "hang")

    def running() -> bool:
        run = home.latest_run("s1")
        return run is not None and run["status"] == "running"

    wait_until(running, 15, "the run to start", agent)
    return gateway, url, agent


def _ready(url: str) -> bool:
    """What /readyz says (a gateway that no longer listens is not ready either)."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            return bool(json.load(answer)["ready"])
    except (OSError, ValueError):
        return False


def _changed(url: str, pid: int, what: str) -> str:
    return (f"clawgate: the gateway at {url} (pid {pid}) was started with {what}; restart it "
            "to use the change\n")


def test_commands_say_once_when_the_gateway_started_with_another_config(
    home: Home, gateway: subprocess.Popen[str]
) -> None:
    url = json.loads((home.path / "gateway.json").read_text())["url"]
    same = home.run("agent", "-m", "hi")
    assert "was started with" not in same.stderr

    home.configure(delay_ms=1)  # config.toml edited while the gateway runs
    note = _changed(url, gateway.pid, "a different config.toml")
    for args, stdin in ((["agent", "-m", "hi"], None), (["chat"], "hello\n"),
                        (["sessions", "list"], None), (["stop"], None),
                        (["models", "list"], None)):
        done = home.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(note) == 1, (args, done.stderr)


LATE_KEY_CONFIG = """\
[models]
default = "openai/gpt-test"

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "TEST_LATE_KEY"

[runtime]
poll_interval_ms = 50
"""


def test_a_key_exported_after_the_gateway_started_is_said_to_be_missing_in_its_environment(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home.path / "config.toml").write_text(LATE_KEY_CONFIG)
    monkeypatch.delenv("TEST_LATE_KEY", raising=False)
    gateway, url = home.start_gateway()
    monkeypatch.setenv("TEST_LATE_KEY", "sk-late-0a1b2c3d4e5f")  # in "another terminal"

    done = home.run("agent", "-m", "hi")

    assert done.returncode == 1
    assert done.stderr.count(_changed(url, gateway.pid, "a different environment (the API "
                                      "keys it could read differ from this shell's)")) == 1
    assert (f"openai: no API key for profile 'default' (env TEST_LATE_KEY is not set in the "
            f"environment of the gateway (pid {gateway.pid}), which reads keys when it "
            "starts: set the key, then restart it)") in done.stderr
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(20) == 0
    _, said = gateway.communicate(timeout=5)
    assert ("warning: the default model openai/gpt-test has no usable key (env TEST_LATE_KEY "
            "is not set): no fallback has one either, so every turn fails. This gateway "
            "reads keys only now, at start: set the key, then restart it\n") in said


def test_ctrl_c_stops_a_gateway_whose_output_pipe_is_gone(home: Home) -> None:
    gateway, _ = home.start_gateway()
    assert gateway.stdout is not None
    assert gateway.stderr is not None
    gateway.stdout.close()  # as in `clawgate gateway 2>&1 | tee log`, when Ctrl-C ends tee
    gateway.stderr.close()
    gateway.send_signal(signal.SIGINT)

    assert gateway.wait(20) == 0  # saying "stopping" failed: the shutdown still went on
    assert not (home.path / "gateway.json").exists()
