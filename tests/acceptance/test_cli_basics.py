"""The CLI as a user meets it: replies, JSON, errors, config mistakes, sessions, help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import clawgate
from tests.acceptance.cli import FOLLOWUP, Home, wait_until


def test_help_lists_the_commands(home: Home) -> None:
    # How fast it starts is a figure bench/turns.py reports, not something a test asserts.
    done = subprocess.run([sys.executable, "-m", "clawgate", "--help"], capture_output=True,
                          text=True, check=True, env=home.env())
    for command in ("chat", "agent", "stop", "sessions", "doctor"):
        assert command in done.stdout


def test_version_is_printed(home: Home) -> None:
    done = home.run("--version")
    assert (done.returncode, done.stdout) == (0, f"clawgate {clawgate.__version__}\n")


def test_agent_prints_the_reply_and_exits_zero(home: Home) -> None:
    done = home.run("agent", "--session", "s1", "--message", "hi")
    assert (done.returncode, done.stdout) == (0, "echo: hi\n")


def test_agent_prints_a_reply_of_thousands_of_pieces_whole(home: Home) -> None:
    words = " ".join(f"w{n:05d}" for n in range(3000))  # the echo streams word by word

    done = home.run("agent", "--session", "long", "-m", words)

    assert (done.returncode, done.stdout) == (0, f"echo: {words}\n")


def test_agent_json_reports_the_run(home: Home) -> None:
    result = home.json("agent", "--session", "s1", "--message", "hi")
    assert result["status"] == "done"
    assert result["reply"] == "echo: hi"
    assert result["model"] == "echo/echo"
    assert result["outputTokens"] > 0


def test_agent_reads_the_message_from_stdin_as_utf8_without_the_last_newline(
    home: Home,
) -> None:
    piped = "\ufeff  indented\nsecond line: café\n\n".encode()  # a BOM, as Notepad writes
    result = json.loads(home.run("agent", "-m", "-", "--json", stdin=piped).stdout)
    assert result["reply"] == "echo:   indented\nsecond line: café"

    latin1 = home.run("agent", "-m", "-", stdin=b"caf\xe9")
    assert latin1.returncode == 2
    assert latin1.stderr.endswith("clawgate: the message on stdin is not UTF-8: byte 0xe9 at "
                                  "offset 3 (convert it first, e.g. with iconv -t UTF-8)\n")


def test_agent_carries_out_chat_commands_as_the_gateway_does(home: Home) -> None:
    home.run("agent", "--session", "s1", "-m", "hi")

    status = home.run("agent", "--session", "s1", "-m", "/status")
    stop = home.run("agent", "--session", "s1", "-m", "stop")

    assert status.returncode == 0, status.stderr
    assert "model     echo/echo" in status.stdout
    assert "echo: /status" not in status.stdout
    assert (stop.returncode, stop.stdout) == (
        0, "nothing was running in session s1; no messages were waiting\n")
    shown = home.json("sessions", "show", "s1")
    assert [m["text"] for m in shown["inbound"]] == ["hi"]  # commands are not messages
    as_json = home.json("agent", "--session", "s1", "-m", "stop")
    assert as_json == {"session": "s1", "command": "stop", "reply": stop.stdout.rstrip("\n")}


def test_stop_of_a_key_with_no_session_is_refused_as_a_likely_typo(home: Home) -> None:
    home.run("agent", "--session", "s1", "-m", "hi")

    typo = home.run("stop", "--session", "s-1")
    as_json = home.run("stop", "--session", "s-1", "--json")

    assert (typo.returncode, typo.stdout) == (2, "")
    assert "there is no session 's-1'" in typo.stderr
    assert "sessions list" in typo.stderr
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["sessionExists"] is False
    assert [row["key"] for row in home.json("sessions", "list")] == ["s1"]  # none created


def test_a_first_use_creates_the_home_with_a_default_config(home: Home) -> None:
    fresh = Home.__new__(Home)
    fresh.path = home.path.parent / "brand-new"
    done = fresh.run("agent", "-m", "hello")
    assert done.returncode == 0
    assert "[providers.echo]" in (fresh.path / "config.toml").read_text()


def test_a_failing_provider_gives_a_clear_error_and_exit_one(home: Home) -> None:
    home.configure(fail="auth")
    done = home.run("agent", "--session", "s1", "--message", "hi")
    assert done.returncode == 1
    assert "ended failed: echo: the API key was refused" in done.stderr


def test_a_run_past_its_timeout_exits_four_and_says_so(home: Home) -> None:
    home.configure(fail="hang", run_timeout=1)
    done = home.run("agent", "--session", "s1", "--message", "hi")
    assert (done.returncode, done.stdout) == (4, ""), done.stderr
    assert re.search(r"clawgate: run run_\w+ ended timeout: timed out after 1s", done.stderr)
    assert (home.latest_run("s1") or {})["status"] == "timeout"


def test_a_message_dropped_unanswered_exits_six_and_says_why(home: Home) -> None:
    home.configure(fail="hang", queue=FOLLOWUP + "cap = 1\ndrop = \"new\"\n")
    hanging = home.start("agent", "--session", "s1", "-m", "first")
    wait_until(lambda: (home.latest_run("s1") or {}).get("status") == "running", 15,
               "the first run to start", hanging)
    waiting = home.start("agent", "--session", "s1", "-m", "second")
    wait_until(lambda: len(home.json("sessions", "show", "s1")["inbound"]) == 2, 15,
               "the second message to wait", waiting)

    full = home.run("agent", "--session", "s1", "-m", "third")  # one waits already: cap 1
    home.run("stop", "--session", "s1")  # ends the first, clears the second
    _, cleared = waiting.communicate(timeout=20)

    assert (full.returncode, full.stdout) == (6, ""), full.stderr
    assert ("clawgate: the message was not answered: queue full: the new message was "
            "dropped") in full.stderr
    assert waiting.returncode == 6, cleared
    assert "clawgate: the message was not answered: cleared by stop" in cleared
    assert hanging.wait(20) == 3


def test_bad_input_is_refused_with_exit_two_and_nothing_stored(home: Home) -> None:
    home.run("agent", "--session", "s1", "--message", "kept")
    for args in (["--message", "   "], ["--session", "bad key", "--message", "x"]):
        done = home.run("agent", *args)
        assert done.returncode == 2, done.stderr
        assert any(line.startswith("clawgate: ") for line in done.stderr.splitlines())
    rows = home.json("sessions", "list")
    assert [r["key"] for r in rows] == ["s1"]


def test_a_broken_config_names_file_line_and_key(home: Home) -> None:
    config = home.path / "config.toml"
    config.write_text("[runtime]\nlease_seconds = 15\nrun_timeout_seconds = \"soon\"\n")
    done = home.run("agent", "-m", "hi")
    assert done.returncode == 2
    assert f"in {config}, line 3, key runtime.run_timeout_seconds" in done.stderr
    assert "expected a whole number" in done.stderr

    config.write_text("[queue]\nmod = \"collect\"\n")
    assert "did you mean 'mode'?" in home.run("agent", "-m", "hi").stderr

    config.write_text("[queue\nmode = 1\n")
    done = home.run("agent", "-m", "hi")
    assert "line 1" in done.stderr
    assert "not valid TOML" in done.stderr


def test_duplicate_message_ids_are_answered_once(home: Home) -> None:
    first = home.json("agent", "--session", "s1", "-m", "hi", "--id", "abc")
    again = home.json("agent", "--session", "s1", "-m", "hi", "--id", "abc")
    assert again["runId"] == first["runId"]
    shown = home.json("sessions", "show", "s1")
    assert len(shown["inbound"]) == 1


def test_sessions_show_has_the_row_its_runs_and_message_fates(home: Home) -> None:
    home.run("agent", "--session", "s1", "-m", "one")
    home.run("agent", "--session", "s1", "-m", "two")
    shown = home.json("sessions", "show", "s1")
    assert {"key", "sessionId", "status", "startedAt", "endedAt", "runtimeMs", "model",
            "modelProvider", "inputTokens", "outputTokens", "updatedAt"} <= set(shown)
    assert shown["status"] == "done"
    assert [r["status"] for r in shown["runs"]] == ["done", "done"]
    assert [(m["text"], m["fate"]) for m in shown["inbound"]] == [("one", "answered"),
                                                                   ("two", "answered")]
    assert shown["inbound"][1]["runId"] == shown["runs"][1]["id"]
    text = home.run("sessions", "show", "s1").stdout
    assert "answered" in text
    for args in (["nope"], ["nope", "--json"]):
        missing = home.run("sessions", "show", *args)
        # a key with no session is bad input (as for stop); stdout is only output
        assert (missing.returncode, missing.stdout) == (2, "")
        assert "clawgate: no session with key 'nope'" in missing.stderr


def test_sessions_limits_are_the_gateways_bounds_when_no_gateway_runs(home: Home) -> None:
    home.run("agent", "--session", "s1", "-m", "hi")
    for args, high in ((["list", "--limit", "6000"], 5000), (["list", "--limit", "0"], 5000),
                       (["show", "s1", "--limit", "2000"], 1000)):
        done = home.run("sessions", *args)
        assert (done.returncode, done.stdout) == (2, ""), args
        assert f"--limit: expected a whole number from 1 to {high}" in done.stderr
    assert home.run("sessions", "show", "s1", "--limit", "1000").returncode == 0
    assert home.run("sessions", "list", "--limit", "5000").returncode == 0


def test_doctor_reports_healthy_as_json(home: Home) -> None:
    home.run("agent", "-m", "hi")
    done = home.run("doctor", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["healthy"] is True


def test_a_corrupt_database_is_a_named_problem_not_a_traceback(home: Home) -> None:
    database = home.path / "clawgate.db"
    database.write_text("garbage\n")

    doctor = home.run("doctor", "--json")

    assert doctor.returncode == 1
    report = json.loads(doctor.stdout)
    assert report["healthy"] is False
    assert [p["code"] for p in report["problems"]] == ["corrupt_database"]
    assert str(database) in report["problems"][0]["message"]
    for args in (["doctor"], ["agent", "-m", "hi"], ["sessions", "list"]):
        done = home.run(*args)
        assert done.returncode == 1, args
        assert f"{database} is not a usable clawgate database" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert database.read_text() == "garbage\n"


def test_doctor_reports_a_broken_config_as_a_problem(home: Home) -> None:
    (home.path / "config.toml").write_text("[models]\ndefault = \"nowhere/x\"\n")
    done = home.run("doctor")
    assert done.returncode == 1
    assert "no provider named 'nowhere'" in done.stdout


def test_sessions_show_times_in_the_local_zone_and_json_in_utc(home: Home) -> None:
    home.run("agent", "--session", "s1", "--message", "hi")
    updated = home.json("sessions", "list")[0]["updatedAt"]
    assert updated.endswith("+00:00")
    local = datetime.fromisoformat(updated).astimezone(ZoneInfo("America/New_York"))
    expected = local.strftime("%Y-%m-%d %H:%M:%S %Z")  # EST or EDT
    env = {**home.env(), "TZ": "America/New_York"}
    for args in (["list"], ["show", "s1"]):
        done = subprocess.run([sys.executable, "-m", "clawgate", "sessions", *args],
                              env=env, capture_output=True, text=True, check=True)
        assert expected in done.stdout, done.stdout


def test_sessions_show_says_when_it_leaves_older_rows_out(home: Home) -> None:
    for text in ("one", "two", "three"):
        home.run("agent", "--session", "s1", "-m", text)
    cut = home.run("sessions", "show", "s1", "--limit", "2")
    assert cut.stdout.endswith("(showing the latest 2 runs and messages; there are older "
                               "ones: --limit 1000 shows up to 1000)\n")
    assert len(home.json("sessions", "show", "s1", "--limit", "2")["runs"]) == 2
    whole = home.run("sessions", "show", "s1", "--limit", "3")
    assert "showing the latest" not in whole.stdout


def test_sessions_list_says_when_there_are_more_sessions_than_it_shows(home: Home) -> None:
    for key in ("s1", "s2", "s3"):
        home.run("agent", "--session", key, "-m", "hi")
    cut = home.run("sessions", "list", "--limit", "2")
    assert cut.stdout.endswith("\n(showing 2 of 3 sessions; --limit N shows up to 5000)\n")
    assert [row["key"] for row in home.json("sessions", "list", "--limit", "2")] == [
        "s3", "s2"]  # the rows alone
    whole = home.run("sessions", "list", "--limit", "3")
    assert "showing" not in whole.stdout


def test_compact_counts_in_words_and_echo_needs_no_key(home: Home) -> None:
    home.run("agent", "-m", "hi")
    assert home.run("agent", "-m", "/compact").stdout.startswith("compacted 1 earlier entry ")
    assert "default (no key needed)" in home.run("models", "list").stdout


def test_global_options_are_taken_after_the_command_too(home: Home) -> None:
    other = home.path.parent / "other-home"
    done = home.run("agent", "--session", "s1", "-m", "hi", "--home", str(other))
    assert (done.returncode, done.stdout) == (0, "echo: hi\n"), done.stderr
    assert [r["key"] for r in home.json("sessions", "list", "--home", str(other))] == ["s1"]
    assert home.json("sessions", "list") == []  # not in $CLAWGATE_HOME's

    token = home.run("gateway", "token", "--home", str(other))
    assert (token.returncode, token.stdout) == (
        0, (other / "gateway.token").read_text().strip() + "\n")
    shown = home.run("models", "list", "-v", "--home", str(other))
    assert shown.returncode == 0, shown.stderr


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "eighty"])
def test_a_port_out_of_range_is_a_usage_error(home: Home, port: str) -> None:
    done = home.run("gateway", f"--port={port}", timeout=20)
    assert (done.returncode, done.stdout) == (2, "")
    assert (f"argument --port: expected a port number from 0 to 65535 (0: any free port), "
            f"got {port!r}") in done.stderr
    assert not (home.path / "gateway.json").exists()


@pytest.mark.parametrize("args", [["sessions", "list", "--json"], ["models", "list"],
                                  ["doctor", "--json"], ["agent", "-m", "hi"]])
def test_a_reader_that_leaves_early_ends_the_command_quietly(
    home: Home, args: list[str]
) -> None:
    """As ``clawgate sessions list --json | head -3`` once head has its lines."""
    home.run("agent", "--session", "s1", "-m", "hi")
    reader, writer = os.pipe()
    os.close(reader)  # gone before anything is written: every write fails
    try:
        done = subprocess.run([sys.executable, "-m", "clawgate", *args], env=home.env(),
                              stdout=writer, stderr=subprocess.PIPE, text=True, timeout=30,
                              check=False)
    finally:
        os.close(writer)
    assert done.returncode == 141, done.stderr  # as a shell reports an end by SIGPIPE
    assert "Traceback" not in done.stderr
    assert "Broken" not in done.stderr
