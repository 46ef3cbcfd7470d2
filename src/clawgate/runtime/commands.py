"""Commands typed inside a chat: /stop, /new (/reset), /status, /queue, /help, and "stop".

Parsing is pure; every channel passes text through ``parse`` before treating it as a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from clawgate.domain import (
    MAX_DEBOUNCE_MS,
    MAX_QUEUE_CAP,
    DropPolicy,
    QueueMode,
    QueuePatch,
    check_unicode,
)
from clawgate.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class SetQueue:
    patch: QueuePatch


@dataclass(frozen=True, slots=True)
class ShowQueue:
    pass


@dataclass(frozen=True, slots=True)
class ShowModel:
    pass


@dataclass(frozen=True, slots=True)
class SetModel:
    model: str  # an alias or provider/model, resolved by the runtime


@dataclass(frozen=True, slots=True)
class Compact:
    pass


Command = Stop | Reset | Status | Help | SetQueue | ShowQueue | ShowModel | SetModel | Compact

HELP = """\
/stop                  stop the current reply and clear waiting messages (or just type: stop)
/new, /reset           start a fresh conversation (the old transcript is kept)
/status                model, current run, queue and token use
/model                 show the model, its fallbacks and the aliases
/model <provider/model or alias>
                       switch this session's model
/compact               summarise older turns now (also happens on its own when needed)
/queue                 show how messages sent during a reply are handled
/queue [<mode>] [debounce:<ms>] [cap:<n>] [drop:old|new|summarize]
                       change only what is named (any order); modes: followup (one reply each),
                       collect (one reply for all), steer (fold into the current reply),
                       interrupt (answer the newest)
/help                  this list
A line whose first word is not / and a name (a path like /usr/bin/python) is a message."""

_SIMPLE: dict[str, Command] = {
    "/stop": Stop(), "/new": Reset(), "/reset": Reset(), "/status": Status(), "/help": Help(),
    "/compact": Compact(),
}


#: What a command's first word looks like: ``/`` and a name. A line starting otherwise, even
#: with ``/`` (``/usr/bin/python is broken``), is a message.
_COMMAND_WORD = re.compile(r"/[a-z][a-z0-9_-]*")


def parse(text: str) -> Command | None:
    """The command in ``text``, or None if it is an ordinary message."""
    stripped = text.strip()
    if stripped.lower() in {"stop", "stop!", "stop."}:
        return Stop()
    word, _, rest = stripped.partition(" ")
    word = word.lower()
    if not _COMMAND_WORD.fullmatch(word):
        return None
    check_unicode("command", rest)
    if word in _SIMPLE:
        if rest.strip():
            raise InvalidInput(f"{word} takes no arguments")
        return _SIMPLE[word]
    if word == "/queue":
        return _parse_queue(rest.split())
    if word == "/model":
        target = rest.strip()
        if not target:
            return ShowModel()
        if " " in target:
            raise InvalidInput("/model takes one name: provider/model or an alias")
        return SetModel(target)
    raise InvalidInput(f"unknown command {word}; /help lists the commands")


def _parse_queue(args: list[str]) -> Command:
    """``/queue [mode] [option:value ...]``, in any order: only what is named changes."""
    if not args:
        return ShowQueue()
    mode: QueueMode | None = None
    debounce: int | None = None
    cap: int | None = None
    drop: DropPolicy | None = None
    seen: set[str] = set()
    for arg in args:
        name, sep, value = arg.partition(":")
        name = name.lower()
        if not sep and mode is None:
            mode = _enum(QueueMode, arg, "queue mode")
        elif not sep:
            raise InvalidInput(f"/queue takes one mode, got {mode!s} and {arg!r}")
        elif name in seen:
            raise InvalidInput(f"unexpected /queue option {arg!r}: {name} is given twice")
        elif name == "debounce":
            debounce = _number(name, value, 0, MAX_DEBOUNCE_MS)
        elif name == "cap":
            cap = _number(name, value, 1, MAX_QUEUE_CAP)
        elif name == "drop":
            drop = _enum(DropPolicy, value, "drop policy")
        else:
            raise InvalidInput(f"unexpected /queue option {arg!r}; /help shows the form")
        seen.add(name)
    return SetQueue(QueuePatch(mode=mode, debounce_ms=debounce, cap=cap, drop=drop))


E = TypeVar("E", QueueMode, DropPolicy)


def _enum(kind: type[E], value: str, what: str) -> E:
    try:
        return kind(value.lower())
    except ValueError:
        options = ", ".join(member.value for member in kind)
        raise InvalidInput(f"unknown {what} {value!r}; choose one of {options}") from None


def _number(name: str, value: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise InvalidInput(f"{name} takes a whole number from {low} to {high}, got {value!r}")
    return int(value)
