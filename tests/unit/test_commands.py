"""Chat commands are recognised exactly; anything else is a message."""

from __future__ import annotations

import pytest

from clawgate.domain import DropPolicy, QueueMode, QueuePatch
from clawgate.errors import InvalidInput
from clawgate.runtime.commands import Help, Reset, SetQueue, ShowQueue, Status, Stop, parse


@pytest.mark.parametrize(
    ("text", "command"),
    [("/stop", Stop()), ("stop", Stop()), ("  Stop! ", Stop()), ("/new", Reset()),
     ("/reset", Reset()), ("/status", Status()), ("/help", Help()), ("/queue", ShowQueue())],
)
def test_commands_are_recognised(text: str, command: object) -> None:
    assert parse(text) == command


@pytest.mark.parametrize("text", [
    "hello", "please stop the music", "stopwatch", " ", "/ ", "/usr/bin/python is broken",
    "/etc/hosts lists localhost", "//comment", "/3 apples", "/:)", "/status/ok"])
def test_ordinary_text_is_a_message(text: str) -> None:
    assert parse(text) is None


def test_queue_takes_a_mode_and_options() -> None:
    assert parse("/queue collect debounce:250 cap:5 drop:old") == SetQueue(
        QueuePatch(mode=QueueMode.COLLECT, debounce_ms=250, cap=5, drop=DropPolicy.OLD))
    assert parse("/queue STEER") == SetQueue(QueuePatch(mode=QueueMode.STEER))


def test_queue_takes_its_mode_and_options_in_any_order_and_case() -> None:
    assert parse("/queue debounce:100 steer") == SetQueue(
        QueuePatch(mode=QueueMode.STEER, debounce_ms=100))
    assert parse("/queue CAP:5 Collect DROP:Old") == SetQueue(
        QueuePatch(mode=QueueMode.COLLECT, cap=5, drop=DropPolicy.OLD))


def test_queue_options_alone_change_only_those_fields() -> None:
    assert parse("/queue cap:5") == SetQueue(QueuePatch(cap=5))
    assert parse("/queue debounce:0 drop:new") == SetQueue(
        QueuePatch(debounce_ms=0, drop=DropPolicy.NEW))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("/queue sideways", "unknown queue mode 'sideways'"),
     ("/queue collect cap:0", "cap takes a whole number from 1 to 1000"),
     ("/queue collect cap:many", "cap takes a whole number"),
     ("/queue collect cap:\uff15", "cap takes a whole number"),  # a full-width 5
     ("/queue debounce:\u0663", "debounce takes a whole number"),  # an Arabic-Indic 3
     ("/queue collect drop:all", "unknown drop policy 'all'"),
     ("/queue collect cap:2 cap:3", "unexpected /queue option 'cap:3': cap is given twice"),
     ("/queue collect speed:9", "unexpected /queue option"),
     ("/stop now", "/stop takes no arguments"),
     ("/queue steer cap:5 collect", "/queue takes one mode, got steer and 'collect'"),
     ("/queue cap:5 sideways", "unknown queue mode 'sideways'"),
     ("/dance", "unknown command /dance"),
     ("/model echo/\ud800", "the command is not valid Unicode: a lone surrogate"),
     ("/Dance with me", "unknown command /dance")],
)
def test_mistakes_in_commands_are_explained(text: str, complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        parse(text)
