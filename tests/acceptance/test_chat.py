"""``clawgate chat`` in a terminal: replies, commands, and Ctrl-C stopping a reply only."""

from __future__ import annotations

import re
import signal
import sqlite3
import stat
import subprocess
import time

import pytest

from clawgate.runtime.runtime import STOPPED_COMPACTING
from clawgate.testing.model_server import FakeModelServer, Hang
from tests.acceptance.cli import Home, wait_until
from tests.acceptance.terminal import CTRL_C, CTRL_D, LEFT, PASTE_END, PASTE_START, UP, Terminal


def _chat_when(home: Home, key: str, typed: str, status: str) -> subprocess.Popen[str]:
    """A chat on ``key`` with ``typed`` piped in, once the key's latest run is ``status``."""
    chat = home.start("chat", "--session", key, stdin=True)
    assert chat.stdin is not None
    chat.stdin.write(typed)
    chat.stdin.flush()
    wait_until(lambda: (home.latest_run(key) or {}).get("status") == status, 15,
               f"the reply to be {status}", chat)
    return chat


def _typing(home: Home, key: str, typed: str, shown: str) -> Terminal:
    """A chat on ``key`` in a terminal, once ``typed`` has been typed and ``shown`` shown
    (what is typed during a reply is sent at once; a piped line waits for the reply)."""
    chat = home.terminal("chat", "--session", key)
    chat.wait_until_editing()
    chat.type(typed)
    chat.wait_for(shown)
    return chat


def test_piped_lines_are_answered_before_the_chat_leaves(home: Home) -> None:
    done = home.run("chat", "--session", "s1", stdin="hello\nhow are you?\n")
    assert done.returncode == 0, done.stderr
    assert "echo: hello\n" in done.stdout
    assert "how are you?\n" in done.stdout
    rows = home.json("sessions", "list")
    assert [(r["key"], r["status"]) for r in rows] == [("s1", "done")]


@pytest.mark.parametrize("where", ["in-process", "via the gateway"])
def test_each_piped_line_gets_its_own_answer_in_order(home: Home, where: str) -> None:
    home.configure(delay_ms=200, queue=None)  # collect mode: it joins what waits for a reply
    if where == "via the gateway":
        home.start_gateway()
    done = home.run("chat", "--session", "p1", stdin="first\nsecond\nthird\n")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("echo:")] == [
        "echo: first", "echo: second", "echo: third"]


@pytest.mark.parametrize("where", ["in-process", "via the gateway"])
def test_a_piped_command_applies_after_the_lines_before_it(home: Home, where: str) -> None:
    home.configure(delay_ms=200, queue=None)
    if where == "via the gateway":
        home.start_gateway()
    done = home.run("chat", "--session", "p2", stdin="first\nsecond\n/new\nthird\nstop\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[killed" not in out
    assert "[interrupted" not in out
    assert (out.index("echo: first\n") < out.index("echo: second\n")
            < out.index("new session ") < out.index("echo: third\n")
            < out.index("nothing was running in session p2"))


def test_a_reply_of_thousands_of_pieces_is_shown_whole_and_so_is_the_next(home: Home) -> None:
    words = " ".join(f"w{n:05d}" for n in range(3000))  # the echo streams word by word

    done = home.run("chat", "--session", "long", stdin=f"{words}\nand then\n")

    assert done.returncode == 0, done.stderr
    assert f"echo: {words}\n" in done.stdout
    assert "echo: and then\n" in done.stdout


def test_commands_answer_in_the_chat(home: Home) -> None:
    done = home.run("chat", stdin="/help\n/queue steer cap:3\n/queue cap:4\n/status\n"
                                  "/queue debounce:100 COLLECT\n"
                                  "/queue bogus\n/frob\n/usr/bin/python is broken\n")
    assert done.returncode == 0
    out = done.stdout
    assert "/new, /reset" in out
    assert "/quit, /exit" in out  # the terminal's own
    assert "queue: steer (debounce 0 ms, cap 3, drop summarize)" in out
    assert "queue: steer (debounce 0 ms, cap 4, drop summarize)" in out  # only cap changed
    assert "queue: collect (debounce 100 ms, cap 4, drop summarize)" in out  # any order
    assert "echo: /usr/bin/python is broken" in out  # a path, not a command
    assert "model     echo/echo" in out
    assert "! unknown queue mode 'bogus'" in out
    assert "! unknown command /frob" in out


@pytest.mark.parametrize(("mode", "notice", "then"), [
    ("interrupt", "[stopping the current reply to answer this]",
     "[interrupted: interrupted by a newer message]"),
    ("followup", "[queued: answered on its own after the current reply]", "echo: second"),
])
def test_a_message_sent_during_a_reply_says_what_becomes_of_it(
    home: Home, mode: str, notice: str, then: str,
) -> None:
    home.configure(delay_ms=3000)
    chat = _typing(home, "q1", f"/queue {mode}\r", f"queue: {mode} (")
    chat.type("first\r")
    wait_until(lambda: (home.latest_run("q1") or {}).get("status") == "running", 15,
               "the reply to start")
    chat.type("second\r")  # during the reply (a piped line would wait for it)
    chat.wait_for(then)
    chat.type(CTRL_D)

    assert chat.wait_exit() == 0
    assert notice in chat.text
    assert then in chat.text.split(notice, 1)[1]


def test_two_chats_on_one_session_each_show_the_reply_to_what_it_sent(home: Home) -> None:
    home.configure(delay_ms=3000)
    second = home.terminal("chat", "--session", "two")
    second.wait_until_editing()
    first = _chat_when(home, "two", "A's question\n", "running")

    # The first chat's process answers the second's message too, once its own reply ends
    # (it serves every waiting message of its session): the reply still shows here, at once.
    second.type("B during A's reply\r")
    second.wait_for("[queued: answered on its own after the current reply]\n")
    second.wait_for("echo: B during A's reply\n")
    second.type(CTRL_D)
    out, _ = first.communicate("", timeout=20)

    assert second.wait_exit() == 0
    assert first.returncode == 0
    assert "echo: A's question\n" in out  # and the other chat's reply, as over a gateway:
    assert "echo: B during A's reply\n" in out  # every reply of the session shows


def test_a_fresh_chat_answers_commands_before_its_first_message(home: Home) -> None:
    done = home.run("chat", "--session", "fresh-key-1", stdin="/status\nstop\n/new\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "no session with key" not in out
    assert "model     echo/echo" in out
    assert "run       none yet" in out
    assert "session fresh-key-1 has no conversation yet: nothing was running" in out
    assert "has no conversation yet; your next message starts a fresh one" in out
    assert home.json("sessions", "list") == []  # nothing was created


def test_new_starts_a_fresh_session_and_keeps_the_old_one(home: Home) -> None:
    before = home.run("chat", stdin="remember this\n")
    assert before.returncode == 0
    old_id = home.json("sessions", "show", "main")["sessionId"]
    after = home.run("chat", stdin="/new\n")
    assert f"the previous one, {old_id}, is kept" in after.stdout
    assert home.json("sessions", "show", "main")["sessionId"] != old_id


@pytest.mark.slow
def test_ctrl_c_stops_the_reply_but_not_the_chat(home: Home) -> None:
    home.configure(fail="hang")
    chat = home.start("chat", "--session", "s1", stdin=True)
    assert chat.stdin is not None
    chat.stdin.write("tell me everything\n")
    chat.stdin.flush()

    def running() -> bool:
        run = home.latest_run("s1")
        return run is not None and run["status"] == "running"

    wait_until(running, 15, "the reply to start", chat)
    chat.send_signal(signal.SIGINT)
    wait_until(lambda: (home.latest_run("s1") or {}).get("status") == "killed", 5,
               "the run to be killed", chat)
    assert chat.poll() is None  # still chatting
    out, _ = chat.communicate("/status\n", timeout=15)

    assert chat.returncode == 0
    assert "[killed: stopped by request]" in out
    assert "killed after" in out  # /status after the stop


#: How a gateway goes away, and what a chat through it then says.
GATEWAY_ENDS = pytest.mark.parametrize(("stop", "why"), [
    (signal.SIGKILL, "the connection to the gateway was lost"),
    (signal.SIGTERM, "the gateway shut down"),
], ids=["kill -9", "SIGTERM"])


@pytest.mark.slow
@GATEWAY_ENDS
def test_a_chat_through_a_gateway_that_dies_ends_and_says_why(
    home: Home, stop: signal.Signals, why: str,
) -> None:
    gateway, _ = home.start_gateway()
    chat = _chat_when(home, "s1", "hello\n", "done")

    gateway.send_signal(stop)
    gateway.wait(20)
    assert chat.wait(15) == 1  # at once, not when the next line is typed (and lost)
    out, err = chat.communicate(timeout=5)

    assert "echo: hello" in out
    assert err.endswith(f"clawgate: {why}; this chat ends: nothing typed now would be sent\n")
    assert "Traceback" not in err


@pytest.mark.slow
@GATEWAY_ENDS
def test_a_message_kept_over_a_gateway_restart_is_named_and_its_reply_shown_later(
    home: Home, stop: signal.Signals, why: str,
) -> None:
    home.configure(delay_ms=60_000, grace=1)
    gateway, _ = home.start_gateway()
    chat = home.terminal("chat", "--session", "k1")
    chat.wait_until_editing()
    chat.type("first\r")
    chat.wait_until_editing()
    chat.type("second\r")  # it waits behind the first
    chat.wait_for("[queued: answered on its own after the current reply]")

    gateway.send_signal(stop)
    gateway.wait(20)
    assert chat.wait_exit(15) == 1
    assert (f"clawgate: {why}; this chat ends: nothing typed now would be sent; 1 message is "
            "kept and will be answered when the gateway is back; run clawgate chat again to "
            "see the reply\n") in chat.text

    home.configure(grace=1)  # (no more delay)
    home.start_gateway()
    wait_until(lambda: (home.latest_run("k1") or {}).get("status") == "done", 20,
               "the kept message to be answered")
    again = home.run("chat", "--session", "k1", stdin="")
    assert again.returncode == 0, again.stderr
    # (the echo answers every message since its last reply: the first had none)
    assert re.search(r"^earlier, \d\d:\d\d: echo: first\nsecond$", again.stdout, re.MULTILINE)
    assert "second" not in home.run("chat", "--session", "k1", stdin="").stdout  # once


def test_a_chat_shows_first_the_replies_that_ended_since_a_chat_left(home: Home) -> None:
    assert home.run("chat", "--session", "e1", stdin="hello\n").returncode == 0
    home.run("agent", "--session", "e1", "-m", "while no chat was open")
    home.run("agent", "--session", "new-key", "-m", "no chat was ever open here")

    back = home.run("chat", "--session", "e1", stdin="")
    fresh = home.run("chat", "--session", "new-key", stdin="")

    earlier = [line for line in back.stdout.splitlines() if line.startswith("earlier")]
    assert len(earlier) == 1
    assert re.fullmatch(r"earlier, \d\d:\d\d: echo: while no chat was open", earlier[0])
    assert "echo: hello" not in back.stdout  # shown by the chat that was open then
    assert "earlier" not in fresh.stdout


@pytest.mark.slow
def test_a_chat_waiting_for_its_answer_when_the_gateway_dies_ends_cleanly(home: Home) -> None:
    home.configure(fail="hang")
    gateway, _ = home.start_gateway()
    # /quit leaves once the message has its answer
    chat = _chat_when(home, "q2", "hang\n/quit\n", "running")

    gateway.kill()  # the run stays "running": the chat is still waiting when it goes
    _, err = chat.communicate(timeout=20)

    assert chat.returncode == 1
    assert err.endswith("clawgate: the connection to the gateway was lost; this chat ends: "
                        "nothing typed now would be sent\n")
    assert "Traceback" not in err
    assert "never retrieved" not in err


def _told_of_a_shutdown(home: Home, grace: int) -> tuple[subprocess.Popen[str], Terminal, str]:
    """A chat in a terminal through a gateway whose reply hangs, once SIGTERM began the
    gateway's shutdown: the gateway, the chat, and what the chat has shown."""
    home.configure(fail="hang", grace=grace)
    gateway, _ = home.start_gateway()
    chat = _typing(home, "s1", "tell me everything\r", "tell me everything")
    wait_until(lambda: (home.latest_run("s1") or {}).get("status") == "running", 15,
               "the reply to start")
    gateway.send_signal(signal.SIGTERM)
    return gateway, chat, chat.wait_for("no message typed now can be sent]")


@pytest.mark.slow
def test_a_chat_is_told_at_once_when_the_gateway_begins_to_shut_down(home: Home) -> None:
    gateway, chat, said = _told_of_a_shutdown(home, grace=3)
    assert re.search(r"\n\[the gateway is shutting down: replies in progress may finish "
                     r"for (3|2\.\d)s; stop still works, but no message typed now can be "
                     r"sent\]\n", said)
    chat.type("too late\r")  # during the grace period
    chat.wait_for("! not sent: the gateway is shutting down")
    gateway.wait(20)
    assert chat.wait_exit(15) == 1  # when the gateway has gone, the chat still open (no ^D)

    out = chat.text
    assert out.index("! not sent: the gateway is shutting down") < out.index("[interrupted:")
    assert out.endswith("clawgate: the gateway shut down; this chat ends: nothing typed now "
                        "would be sent\n")
    shown = home.json("sessions", "show", "s1")
    assert [m["text"] for m in shown["inbound"]] == ["tell me everything"]


@pytest.mark.slow
def test_stop_and_status_still_go_through_while_the_gateway_shuts_down(home: Home) -> None:
    gateway, chat, _ = _told_of_a_shutdown(home, grace=30)
    chat.type("/status\r")  # during the grace period
    chat.wait_for("model     echo/echo")
    chat.type("/queue\r")  # (it only shows the settings)
    chat.wait_for("followup (debounce")
    chat.type("/queue collect\r")  # (it would change them)
    chat.wait_for("! not sent: the gateway is shutting down")
    chat.type("stop\r")
    chat.wait_for("[killed: stopped by request]")
    gateway.wait(20)  # the reply stopped: the gateway need not wait out its grace
    assert chat.wait_exit(15) == 1

    assert chat.text.count("! not sent") == 1  # /queue collect only
    assert home.json("sessions", "show", "s1")["status"] == "killed"


def test_a_line_typed_in_a_terminal_is_whole_editable_and_recalled(home: Home) -> None:
    chat = home.terminal("chat", "--session", "t1")
    chat.wait_until_editing()
    chat.type("x" * 5000 + "\r")  # longer than a terminal's canonical line (4,095 bytes)
    chat.wait_for("echo: " + "x" * 5000 + "\n")
    chat.wait_until_editing()
    chat.type(f"helo{LEFT}l\r")  # Left moves the cursor: "hello", not "helo\x1b[Dl"
    chat.wait_for("echo: hello\n")
    chat.wait_until_editing()
    chat.type(f"{UP}\r")  # Up recalls the line before
    chat.wait_for("echo: hello\n", times=2)
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0
    assert chat.canonical()  # the terminal is given back as it was

    history = home.path / "chat_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600  # it holds what was typed
    again = home.terminal("chat", "--session", "t2")  # a later chat recalls it too
    again.wait_until_editing()
    again.type(f"{UP}\r")
    again.wait_for("echo: hello\n")


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "signalled"])
def test_leaving_with_ctrl_c_gives_the_terminal_back(home: Home, typed: bool) -> None:
    chat = home.terminal("chat", "--session", "t3")
    chat.wait_until_editing()  # readline has the terminal
    for _ in range(2):
        chat.type(CTRL_C) if typed else chat.interrupt()
        chat.wait_for("press Ctrl-C again to leave")
    assert chat.wait_exit() == 0
    assert chat.canonical()
    assert "[leaving]\n" in chat.text


def test_ctrl_c_throws_away_the_line_being_typed(home: Home) -> None:
    chat = home.terminal("chat", "--session", "c1")
    chat.wait_until_editing()
    chat.type("first\\\r")  # a message of two lines, begun
    chat.wait_for("... ")
    chat.type("abc")
    chat.wait_for("abc")
    chat.type(CTRL_C)  # as shells do: what was typed is not sent
    chat.wait_for("abc^C\n")  # the screen shows it was thrown away
    chat.type("second draft")
    chat.wait_for("second draft")
    chat.type(CTRL_C)  # (at once: not a second press of "leave")
    chat.wait_for("second draft^C\n")
    chat.type("def\r")
    chat.wait_for("echo: def\n")
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0

    sent = [m["text"] for m in home.json("sessions", "show", "c1")["inbound"]]
    assert sent == ["def"]
    assert "[" not in chat.text  # nothing ran: nothing to stop, nothing said of stopping


def test_ctrl_c_on_a_line_typed_during_a_reply_stops_the_reply(home: Home) -> None:
    home.configure(chunk_delay_ms=60_000)  # its first word, then a long pause
    chat = _typing(home, "c2", "tell me everything\r", "echo:")
    chat.type("half a thought")
    chat.wait_for("half a thought")
    chat.type(CTRL_C)
    chat.wait_for("[killed: stopped by request]")
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0
    assert [m["text"] for m in home.json("sessions", "show", "c2")["inbound"]] == [
        "tell me everything"]


def test_a_paste_or_a_continued_line_is_one_message(home: Home) -> None:
    chat = home.terminal("chat", "--session", "p1")
    chat.wait_until_editing()
    assert chat.brackets_pastes
    trace = 'Traceback (most recent call last):\r  File "x.py", line 1\rValueError: bad\r'
    chat.type(f"{PASTE_START}{trace}{PASTE_END}\r")  # a terminal sends a paste bracketed
    chat.wait_for('echo: Traceback (most recent call last):\n  File "x.py", line 1\n'
                  "ValueError: bad\n")
    chat.wait_until_editing()
    chat.type("first line\\\r")  # typed by hand: a line ending in \ goes on
    chat.wait_for("... ")
    chat.type("second line\r")
    chat.wait_for("echo: first line\nsecond line\n")
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0

    sent = [m["text"] for m in home.json("sessions", "show", "p1")["inbound"]]
    assert len(sent) == 2  # two messages, not five


@pytest.mark.parametrize("where", ["in-process", "via the gateway"])
@pytest.mark.parametrize(("drop", "dropped", "kept", "why"), [
    ("new", "third", "second", "queue full: the new message was dropped"),
    ("old", "second", "third", "queue full: the oldest waiting message was dropped"),
])
def test_a_message_the_full_queue_drops_is_named_and_not_said_to_be_queued(
    home: Home, where: str, drop: str, dropped: str, kept: str, why: str,
) -> None:
    home.configure(delay_ms=3000, queue=None)
    if where == "via the gateway":
        home.start_gateway()
    chat = _typing(home, "d1", f"/queue collect cap:1 drop:{drop}\r", "queue: collect (")
    chat.type("first\r")
    wait_until(lambda: (home.latest_run("d1") or {}).get("status") == "running", 15,
               "the reply to start")
    chat.type("second\r")
    chat.wait_for("[queued: ")
    chat.type("third\r")
    chat.wait_for(f"echo: {kept}\n")
    chat.type(CTRL_D)

    assert chat.wait_exit() == 0
    out = chat.text
    assert out.count("[queued: answered together") == (1 if drop == "new" else 2)
    assert out.count(f'[message "{dropped}" dropped: {why}]') == 1  # which one, said once


def test_a_chat_is_told_what_a_stop_from_another_terminal_dropped(home: Home) -> None:
    home.configure(fail="hang")
    chat = _typing(home, "x1", "first\r", "first")  # in-process
    wait_until(lambda: (home.latest_run("x1") or {}).get("status") == "running", 15,
               "the reply to start")
    chat.type("second\r")
    wait_until(lambda: home.json("sessions", "show", "x1")["waiting"] == 1, 15,
               "the second message to wait")

    stop = home.run("stop", "--session", "x1")  # another terminal
    assert "dropped 1 waiting message" in stop.stdout
    chat.wait_for("[killed: stopped by request]")
    chat.type(CTRL_D)

    assert chat.wait_exit() == 0
    assert ('[message "second" dropped: cleared by stop, or withdrawn when its sender left]\n'
            '[killed: stopped by request]') in (
        chat.text)


@pytest.mark.parametrize("leave", ["/quit\r", CTRL_D])
def test_leaving_during_a_reply_says_what_it_waits_for(home: Home, leave: str) -> None:
    home.configure(fail="hang")
    chat = home.terminal("chat", "--session", "w1")
    chat.wait_until_editing()
    chat.type("tell me everything\r")
    wait_until(lambda: (home.latest_run("w1") or {}).get("status") == "running", 15,
               "the reply to start")
    chat.type(leave)
    chat.wait_for("[waiting for the reply to finish; Ctrl-C stops it]")
    chat.interrupt()
    chat.wait_for("[killed: stopped by request]")
    assert chat.wait_exit() == 0


@pytest.mark.parametrize("where", ["in-process", "via the gateway"])
def test_a_typed_stop_is_reported_once(home: Home, where: str) -> None:
    home.configure(fail="hang")
    if where == "via the gateway":
        home.start_gateway()
    chat = _typing(home, "k1", "tell me everything\r", "tell me everything")
    wait_until(lambda: (home.latest_run("k1") or {}).get("status") == "running", 15,
               "the reply to start")
    chat.type("stop\r")
    chat.wait_for("[killed: stopped by request]")
    chat.type(CTRL_D)

    assert chat.wait_exit() == 0
    assert chat.text.count("[killed: stopped by request]") == 1
    assert "stopped run" not in chat.text  # the same news again


@pytest.mark.slow
@pytest.mark.parametrize("where", ["in-process", "via the gateway"])
def test_ctrl_c_stops_a_compaction_that_hangs(
    home: Home, server: FakeModelServer, monkeypatch: pytest.MonkeyPatch, where: str,
) -> None:
    monkeypatch.setenv("TEST_CHAT_KEY", "sk-chat-test")
    home.use_model_server(server.openai_base_url, "TEST_CHAT_KEY")
    assert home.run("chat", "--session", "m1", stdin="hello\n").returncode == 0
    server.default = Hang()  # the summary never comes
    if where == "via the gateway":
        home.start_gateway()
    chat = home.terminal("chat", "--session", "m1")
    chat.wait_until_editing()
    chat.type("/compact\r")
    chat.wait_for("[compacting; Ctrl-C stops it]")
    wait_until(lambda: len(server.exchanges) == 2, 15, "the summary to be asked for")
    chat.type(CTRL_C)
    chat.wait_for(STOPPED_COMPACTING)
    chat.type("/status\r")  # the chat goes on
    chat.wait_for("model     openai/gpt-test")
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0

    assert "nothing was running" not in chat.text
    assert "stopped compacting" not in chat.text  # /compact's answer says it: once


@pytest.mark.slow
def test_ctrl_c_twice_leaves_at_once_when_the_gateway_is_stuck(home: Home) -> None:
    gateway, _ = home.start_gateway()
    chat = home.terminal("chat", "--session", "g1")
    chat.wait_until_editing()
    gateway.send_signal(signal.SIGSTOP)  # alive, but answers nothing
    try:
        chat.type("hello\r")
        chat.type(CTRL_C)  # its stop is not answered either
        chat.wait_for("press Ctrl-C again to leave")
        chat.type(CTRL_C)
        chat.wait_for("[leaving]")
        assert chat.wait_exit(within=5) == 0  # a bound: it leaves at once
        assert chat.canonical()
    finally:
        gateway.send_signal(signal.SIGCONT)


def _replies(home: Home, key: str) -> list[str]:
    """The assistant's entries in the session's transcript, as stored."""
    with sqlite3.connect(f"file:{home.path / 'clawgate.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT t.text FROM transcript t JOIN sessions s ON s.id = "
                          "t.session_id WHERE s.key = ? AND t.role = 'assistant' ORDER BY "
                          "t.seq", (key,)).fetchall()
    return [str(row[0]) for row in rows]


@pytest.mark.parametrize("end", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "hang-up"])
def test_a_chat_ended_mid_reply_keeps_what_was_written(home: Home, end: signal.Signals
                                                        ) -> None:
    home.configure(chunk_delay_ms=60_000)  # its first word, then a long pause
    chat = home.terminal("chat", "--session", "h1")
    chat.wait_until_editing()
    chat.type("tell me everything\r")
    chat.wait_for("echo:")
    if end is signal.SIGTERM:
        chat.process.send_signal(signal.SIGTERM)
    else:
        chat.hang_up()  # the terminal window is closed
    assert chat.wait_exit() == 128 + end

    run = home.latest_run("h1")
    assert run is not None
    assert run["status"] == "interrupted"
    assert re.fullmatch(r"clawgate chat \(pid \d+\) shut down before the reply was complete",
                        run["error"])
    assert _replies(home, "h1") == ["echo:"]
    if end is signal.SIGTERM:  # the terminal is still there: given back as it was, told why
        assert chat.canonical()
        assert chat.text.endswith("echo:\nclawgate: this chat ends (SIGTERM)\n")


def test_a_chat_whose_output_is_closed_stops_and_ends_cleanly(home: Home) -> None:
    home.configure(fail="hang")
    chat = _chat_when(home, "b1", "tell me everything\n", "running")
    assert chat.stdout is not None
    assert chat.stderr is not None
    chat.stdout.close()  # as in `clawgate chat | tee log`, when Ctrl-C ends tee too
    chat.send_signal(signal.SIGINT)

    assert chat.wait(15) == 1
    err = chat.stderr.read()
    assert err.endswith("\nclawgate: the chat's output was closed (Broken pipe); this chat "
                        "ends\n")
    assert "Traceback" not in err
    assert "Exception" not in err
    run = home.latest_run("b1")
    assert run is not None
    assert run["status"] in ("killed", "interrupted")  # stopped, either way


def test_a_reply_the_terminal_cannot_encode_is_shown_and_the_chat_goes_on(home: Home
                                                                         ) -> None:
    chat = home.terminal("chat", "--session", "u1", env={"PYTHONIOENCODING": "ascii"})
    chat.wait_until_editing()
    assert home.run("agent", "--session", "u1", "-m", "café").returncode == 0
    chat.wait_for("echo: caf?\n")  # (a character ASCII has no way to write)
    chat.type("plain\r")  # the chat still shows replies
    chat.wait_for("echo: plain\n")
    chat.type(CTRL_D)
    assert chat.wait_exit() == 0
    assert chat.canonical()
    assert "Traceback" not in chat.text


@pytest.mark.parametrize(("where", "leave"), [
    ("in-process", "Ctrl-C twice"), ("in-process", "SIGTERM"),
    ("via the gateway", "Ctrl-C twice")])
def test_a_reply_a_chat_left_during_is_not_shown_again_as_earlier(
        home: Home, where: str, leave: str) -> None:
    home.configure(chunk_delay_ms=60_000)  # its first word, then a long pause
    if where == "via the gateway":
        home.start_gateway()
    assert home.run("chat", "--session", "l1", stdin="").returncode == 0  # (left once)
    chat = home.terminal("chat", "--session", "l1")
    chat.wait_until_editing()
    chat.type("tell me everything\r")
    chat.wait_for("echo:")
    if leave == "SIGTERM":  # (in-process: the reply ends as the chat leaves)
        chat.process.send_signal(signal.SIGTERM)
    else:  # stopped, and left at once
        chat.type(CTRL_C)
        chat.type(CTRL_C)
    chat.wait_exit()

    # the user watched it end: the next chat does not show it again
    assert "earlier" not in home.run("chat", "--session", "l1", stdin="").stdout


def test_a_reply_an_open_chat_showed_is_not_shown_again_as_earlier(home: Home) -> None:
    assert home.run("chat", "--session", "o1", stdin="").returncode == 0  # (left once)
    seen = (home.path / "chat_seen.json").read_text()
    open_chat = home.terminal("chat", "--session", "o1")
    open_chat.wait_until_editing()
    assert home.run("agent", "--session", "o1", "-m", "while a chat is open").returncode == 0
    open_chat.wait_for("echo: while a chat is open\n")
    wait_until(lambda: (home.path / "chat_seen.json").read_text() != seen, 10,
               "the open chat to record what it showed")

    assert "earlier" not in home.run("chat", "--session", "o1", stdin="").stdout


@pytest.mark.slow
def test_a_chat_whose_gateway_dies_mid_reply_says_so_on_a_line_of_its_own(home: Home
                                                                          ) -> None:
    home.configure(chunk_delay_ms=60_000)  # its first word, then a long pause
    gateway, _ = home.start_gateway()
    chat = _typing(home, "m1", "tell me everything\r", "echo:")
    gateway.kill()
    assert chat.wait_exit() == 1
    assert "echo:\nclawgate: the connection to the gateway was lost" in chat.text


def test_ctrl_c_as_the_chat_starts_ends_it_quietly(home: Home) -> None:
    for wait in (0.1, 0.2, 0.3):  # (somewhere in its start: before its own Ctrl-C handling)
        chat = home.terminal("chat", "--session", "i1")
        time.sleep(wait)
        chat.interrupt()
        time.sleep(0.3)
        if chat.process.poll() is None:  # (it had its own handling: Ctrl-C twice leaves)
            chat.interrupt()
        ended = chat.wait_exit()
        assert "Traceback" not in chat.text
        assert ended in (130, -signal.SIGINT, 0)
