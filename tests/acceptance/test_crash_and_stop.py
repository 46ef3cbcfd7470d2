"""Processes die and are stopped; sessions never wedge. Real subprocesses, real SQLite."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.cli import Home, wait_until

pytestmark = pytest.mark.slow


def _running(home: Home, key: str) -> bool:
    run = home.latest_run(key)
    return run is not None and run["status"] == "running"


def test_kill_9_mid_run_then_a_new_agent_answers_and_the_old_run_is_interrupted(
    home: Home,
) -> None:
    lease = 4
    home.configure(fail="hang", lease=lease)
    doomed = home.start("agent", "--session", "s1", "-m", "will you finish?")
    wait_until(lambda: _running(home, "s1"), 15, "the first run to start", doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)
    _a_new_agent_takes_over(home, lease)
    assert home.run("doctor").returncode == 0


def test_the_next_command_after_a_crash_says_what_it_recovered_in_plain_words(
    home: Home,
) -> None:
    doomed = _hanging_agent(home, lease=15)
    run_id = (home.latest_run("s1") or {})["id"]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)

    listed = home.run("sessions", "list")

    assert (f"clawgate: recovered run {run_id} of session s1: the process that ran it "
            f"exited (pid {doomed.pid} on ") in listed.stderr
    assert listed.stderr.rstrip().endswith("; it ended interrupted")
    assert "WARNING" not in listed.stderr  # no log line's time, level and logger


def test_stop_from_another_process_ends_a_hanging_run_within_a_second(home: Home) -> None:
    home.configure(fail="hang")
    agent = home.start("agent", "--session", "s1", "-m", "hang forever")
    wait_until(lambda: _running(home, "s1"), 15, "the run to start", agent)

    stopped = home.json("stop", "--session", "s1")

    assert stopped["status"] == "killed"
    assert stopped["outcome"] == "signalled"
    assert stopped["waitedMs"] < 1000
    assert agent.wait(10) == 3  # the agent reports its run was stopped
    assert (home.latest_run("s1") or {})["status"] == "killed"
    again = home.run("stop", "--session", "s1")
    assert again.stdout == "nothing was running in session s1; no messages were waiting\n"
    assert "answered (run killed)" in home.run("sessions", "show", "s1").stdout
    assert home.run("doctor").returncode == 0


def test_sigterm_to_an_in_process_agent_records_what_happened(home: Home) -> None:
    home.configure(fail="hang")
    agent = home.start("agent", "--session", "s1", "-m", "hang")
    wait_until(lambda: _running(home, "s1"), 15, "the run to start", agent)

    agent.send_signal(signal.SIGTERM)

    assert agent.wait(10) == 5
    run = home.latest_run("s1") or {}
    assert run["status"] == "interrupted"
    assert run["error"] == (f"clawgate agent (pid {agent.pid}) shut down before the reply "
                            "was complete")
    assert home.run("doctor").returncode == 0


def test_two_agents_on_one_session_are_answered_one_after_the_other(home: Home) -> None:
    home.configure(delay_ms=1500)
    first = home.start("agent", "--session", "s1", "-m", "first")
    wait_until(lambda: _running(home, "s1"), 15, "the first run to start", first)
    second = home.start("agent", "--session", "s1", "-m", "second")

    outs = [p.communicate(timeout=30)[0] for p in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0]
    assert outs == ["echo: first\n", "echo: second\n"]
    runs = home.json("sessions", "show", "s1")["runs"]
    assert len(runs) == 2
    assert runs[0]["endedAt"] <= runs[1]["startedAt"]


def test_a_waiting_message_sent_again_with_its_id_after_a_crash_is_answered(
    home: Home,
) -> None:
    home.configure(fail="hang")
    first = home.start("agent", "--session", "s1", "-m", "first")
    wait_until(lambda: _running(home, "s1"), 15, "the first run to start", first)
    second = home.start("agent", "--session", "s1", "-m", "second", "--id", "r1")
    wait_until(lambda: len(home.json("sessions", "show", "s1")["inbound"]) == 2, 15,
               "the second message to be stored", second)
    for process in (first, second):  # both processes die; "second" still waits
        process.send_signal(signal.SIGKILL)
        process.wait(5)
    home.configure()  # the model answers again

    again = home.run("agent", "--session", "s1", "-m", "second", "--id", "r1", timeout=20)

    assert again.returncode == 0, again.stderr
    assert "second" in again.stdout
    inbound = home.json("sessions", "show", "s1")["inbound"]
    assert [m["text"] for m in inbound] == ["first", "second"]  # sent once, answered once
    assert home.run("doctor").returncode == 0


def test_doctor_finds_a_dead_owner_and_fix_repairs_it(home: Home) -> None:
    home.configure(fail="hang", lease=60)
    doomed = home.start("agent", "--session", "s1", "-m", "hang")
    wait_until(lambda: _running(home, "s1"), 15, "the run to start", doomed)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(5)

    found = home.run("doctor")
    assert found.returncode == 1
    assert "dead_owner" in found.stdout
    fixed = home.run("doctor", "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert "marked interrupted" in fixed.stdout
    assert (home.latest_run("s1") or {})["status"] == "interrupted"


def test_kill_9_the_running_agent_and_the_waiting_one_still_finishes(home: Home) -> None:
    lease = 4
    home.configure(fail="hang", lease=lease)
    running = home.start("agent", "--session", "s1", "-m", "first")
    wait_until(lambda: _running(home, "s1"), 15, "the first run to start", running)
    home.configure(lease=lease)  # the second process reads a model that answers
    waiting = home.start("agent", "--session", "s1", "-m", "second")
    wait_until(lambda: len(home.json("sessions", "show", "s1")["inbound"]) == 2, 15,
               "the second message to be accepted", waiting)

    started = time.monotonic()
    running.send_signal(signal.SIGKILL)
    out, err = waiting.communicate(timeout=lease + 10)
    took = time.monotonic() - started

    assert waiting.returncode == 0, err
    assert out == "echo: first\nsecond\n"
    assert took < lease + 5
    runs = home.json("sessions", "show", "s1")["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "done"]
    assert home.run("doctor").returncode == 0


def _a_new_agent_takes_over(home: Home, lease: int) -> list[dict[str, Any]]:
    """With the first agent dead or stalled mid-run on s1, a new agent answers in time; the
    session's runs afterwards (the first ``interrupted``, the new one ``done``)."""
    home.configure(lease=lease)  # the provider answers again
    started = time.monotonic()
    done = home.run("agent", "--session", "s1", "-m", "are you back?")
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    # The model is shown the question the first agent never answered, then the new one.
    assert done.stdout == "echo: will you finish?\nare you back?\n"
    assert took < lease + 5
    runs: list[dict[str, Any]] = home.json("sessions", "show", "s1")["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "done"]
    return runs


def _stop_outside_a_write(process: subprocess.Popen[str], database: Path) -> None:
    """SIGSTOP ``process`` at a moment it holds no write lock (as a stall between two
    transactions would), so that other processes can still write."""
    for _ in range(50):
        process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped mid-transaction: let it finish
            process.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError("could not stop the agent between two transactions")


def test_a_stalled_agent_loses_its_run_at_lease_expiry_and_cannot_write_to_it(
    home: Home,
) -> None:
    lease = 3
    home.configure(fail="hang", lease=lease)
    stalled = home.start("agent", "--session", "s1", "-m", "will you finish?")
    wait_until(lambda: _running(home, "s1"), 15, "the first run to start", stalled)
    _stop_outside_a_write(stalled, home.path / "clawgate.db")  # alive, but silent
    taken_over = _a_new_agent_takes_over(home, lease)

    stalled.send_signal(signal.SIGCONT)  # it wakes up still believing it owns the run
    _, err = stalled.communicate(timeout=lease + 10)

    assert stalled.returncode == 5, err  # it reports the run as interrupted, once
    assert "ended interrupted: its owner stopped renewing the lease (crashed or stalled)" in err
    assert home.json("sessions", "show", "s1")["runs"] == taken_over  # it wrote nothing
    assert home.run("doctor").returncode == 0


@pytest.mark.parametrize("silence", ["kill -9", "stalled"])
def test_sessions_read_interrupted_once_the_owner_is_gone_and_its_lease_is_over(
    home: Home, silence: str,
) -> None:
    """With no gateway up, no other process may come along to recover the run: the listing
    itself must not show a run whose owner is gone as running."""
    lease = 2
    agent = _hanging_agent(home, lease)
    if silence == "kill -9":
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
    else:
        _stop_outside_a_write(agent, home.path / "clawgate.db")  # alive, but silent
    time.sleep(lease + 1)  # its last renewal came before the silence

    listed = home.json("sessions", "list")

    assert [(s["key"], s["status"]) for s in listed] == [("s1", "interrupted")]
    assert (home.latest_run("s1") or {})["status"] == "interrupted"
    assert home.run("doctor").returncode == 0


def test_with_a_gateway_up_its_supervisor_frees_the_run_of_a_killed_agent(home: Home) -> None:
    lease = 2
    agent = _hanging_agent(home, lease)  # no gateway yet: the agent runs the turn itself
    home.start_gateway()
    agent.send_signal(signal.SIGKILL)
    agent.wait(5)

    def interrupted() -> bool:
        listed = home.run("sessions", "list", "--json")
        assert "in-process" not in listed.stderr  # the gateway answers
        return [s["status"] for s in json.loads(listed.stdout)] == ["interrupted"]

    wait_until(interrupted, lease + 10, "the gateway to end the orphaned run")


def _hanging_agent(home: Home, lease: int) -> subprocess.Popen[str]:
    """An in-process agent whose run on s1 is under way and never ends by itself."""
    home.configure(fail="hang", lease=lease)
    agent = home.start("agent", "--session", "s1", "-m", "will you finish?")
    wait_until(lambda: _running(home, "s1"), 15, "the run to start", agent)
    return agent


def test_two_agents_at_once_with_the_shipped_queue_defaults(home: Home) -> None:
    home.configure(delay_ms=300, queue=None)  # collect, debounce 1000 ms
    agents = [home.start("agent", "--session", "s1", "-m", text)
              for text in ("first", "second")]

    outs = [agent.communicate(timeout=30) for agent in agents]

    assert [agent.returncode for agent in agents] == [0, 0], [err for _, err in outs]
    assert all(out.startswith("echo: ") for out, _ in outs)
    shown = home.json("sessions", "show", "s1")
    assert {m["fate"] for m in shown["inbound"]} <= {"answered", "merged"}
    _check_debounce(shown, debounce=timedelta(milliseconds=1000))
    assert home.run("doctor").returncode == 0


def _check_debounce(shown: dict[str, Any], debounce: timedelta) -> None:
    """A run that took messages which queued behind the previous run started only after
    ``debounce`` of quiet following the newest of them, whichever process claimed it."""
    runs = shown["runs"]
    for previous, run in itertools.pairwise(runs):
        taken = [datetime.fromisoformat(m["receivedAt"]) for m in shown["inbound"]
                 if m["runId"] == run["id"]]
        if min(taken) < datetime.fromisoformat(previous["endedAt"]):
            assert datetime.fromisoformat(run["startedAt"]) >= max(taken) + debounce
