"""Reading a TOML file strictly: typed getters, unknown keys refused, mistakes located.

Every mistake is a ``ConfigError`` with the file, the line and the dotted key; an unknown key
comes with a suggestion. ``done()`` refuses whatever a table holds that nobody asked for.
"""

from __future__ import annotations

import difflib
import tomllib
from enum import StrEnum
from typing import Any, NoReturn, TypeVar

from clawgate.errors import ConfigError

E = TypeVar("E", bound=StrEnum)


class Source:
    """The file's text, to say on which line a key was written."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self._places = _places(text.splitlines())

    def line_of(self, dotted: str) -> int | None:
        """The line where ``a.b.key`` is written: its own line (``a.b.key = ...``, a dotted
        ``b.key = ...`` under ``[a]``, or its header), else the line of the nearest
        enclosing table or inline table that is written (a missing key, or one inside
        ``b = { key = ... }``).

        Items of an array of tables are addressed ``a.b[0].key``, ``a.b[1].key``, ...
        """
        name = dotted
        while name:  # each step drops one part of the name
            if name in self._places:
                return self._places[name]
            name = _parent(name)
        return None


def _parent(name: str) -> str:
    if name.endswith("]") and "[" in name:
        return name[: name.rindex("[")]
    return name.rpartition(".")[0]


def _places(lines: list[str]) -> dict[str, int]:
    """Where each key and table is first written: dotted name -> line number."""
    places: dict[str, int] = {}
    arrays: dict[str, int] = {}  # array of tables -> index of its latest item
    table: list[str] = []
    index = 0
    while index < len(lines):  # every round moves on at least one line
        line = lines[index].strip()
        index += 1
        if line.startswith("["):
            table = _header(line, arrays)
            _record(places, table, index)
            continue
        parts, rest = _key(line)
        if parts:
            _record(places, table + parts, index)
            index = _after_value(lines, index, rest)
    return places


def _record(places: dict[str, int], parts: list[str], line: int) -> None:
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        places.setdefault(name, line)
        places.setdefault(_parent(name) if name.endswith("]") else name, line)


def _header(line: str, arrays: dict[str, int]) -> list[str]:
    """The table a ``[a.b]`` or ``[[a.b]]`` header opens, as parts (``b[n]`` for items)."""
    double = line.startswith("[[")
    parts, _ = _key_parts(line[2 if double else 1:], "]")
    if double and parts:
        name = ".".join(parts)
        arrays[name] = arrays.get(name, -1) + 1
        parts[-1] += f"[{arrays[name]}]"
    return parts


def _key(line: str) -> tuple[list[str], str]:
    """The key of a ``key = value`` line and the text after ``=`` (no key: [], "")."""
    if not line or line.startswith("#"):
        return [], ""
    return _key_parts(line, "=")


def _key_parts(text: str, stop: str) -> tuple[list[str], str]:
    """A dotted key (bare or quoted parts) ending at ``stop``; the text after it."""
    parts: list[str] = []
    i = 0
    while i < len(text):  # each round consumes one part and its dot
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            close = text.find(text[i], i + 1)
            if close < 0:
                return [], ""
            parts.append(text[i + 1:close])
            i = close + 1
        else:
            start = i
            while i < len(text) and (text[i].isalnum() or text[i] in "_-"):
                i += 1
            if i == start:
                return [], ""
            parts.append(text[start:i])
        while i < len(text) and text[i] in " \t":
            i += 1
        if text.startswith(stop, i):
            return parts, text[i + len(stop):]
        if not text.startswith(".", i):
            return [], ""
        i += 1
    return [], ""


def _after_value(lines: list[str], index: int, text: str) -> int:
    """The index of the first line after a value that starts with ``text`` (values may run
    over several lines: multi-line strings and arrays)."""
    quote, depth = "", 0
    while True:  # each round reads one more line, up to the last
        quote, depth = _scan(text, quote, depth)
        if (not quote and depth <= 0) or index >= len(lines):
            return index
        text = lines[index]
        index += 1


def _scan(text: str, quote: str, depth: int) -> tuple[str, int]:
    """Follow strings and brackets through one line: the open quote and depth after it."""
    i = 0
    while i < len(text):  # each round consumes at least one character
        if quote:
            if text[i] == "\\" and quote in ('"', '"""'):
                i += 2
            elif text.startswith(quote, i):
                i, quote = i + len(quote), ""
            else:
                i += 1
            continue
        if text[i] == "#":
            break
        if text.startswith(('"""', "'''"), i):
            quote, i = text[i:i + 3], i + 3
            continue
        if text[i] in "\"'":
            quote = text[i]
        elif text[i] in "[{":
            depth += 1
        elif text[i] in "]}":
            depth -= 1
        i += 1
    return ("" if quote in ('"', "'") else quote), depth


def load(text: str, path: str) -> Table:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path,
                          line=_line_of_decode_error(exc)) from exc
    return Table(data, "", Source(path, text))


class Table:
    """One TOML table being read."""

    def __init__(self, data: dict[str, Any], path: str, source: Source,
                 known: tuple[str, ...] = ()) -> None:
        self.data = dict(data)
        self.path = path
        self.source = source
        self.known = known  # the keys this table may hold (for suggestions)

    def _dotted(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> NoReturn:
        dotted = self._dotted(key)
        raise ConfigError(message, path=self.source.path, line=self.source.line_of(dotted),
                          key=dotted)

    def table(self, key: str, known: tuple[str, ...] = ()) -> Table:
        value = self.data.pop(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table ([{self._dotted(key)}]), got {_kind(value)}")
        return Table(value, self._dotted(key), self.source, known)

    def tables(self, key: str, known: tuple[str, ...] = ()) -> list[Table]:
        """An array of tables (``[[a.b]]``)."""
        value = self.data.pop(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(key, f"expected a list of tables ([[{self._dotted(key)}]])")
        return [Table(v, f"{self._dotted(key)}[{n}]", self.source, known)
                for n, v in enumerate(value)]

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, default: str) -> str:
        value = self.data.pop(key, default)
        if not isinstance(value, str):
            self.fail(key, f"expected text in quotes, got {_kind(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key, "") if key in self.data else None

    def strings(self, key: str) -> list[str]:
        value = self.data.pop(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"expected a list of texts in quotes, got {_kind(value)}")
        return list(value)

    def string_table(self, key: str) -> dict[str, str]:
        value = self.data.pop(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.fail(key, "expected a table of texts, like { name = \"value\" }")
        return dict(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            got = repr(value) if isinstance(value, float) else _kind(value)
            self.fail(key, f"expected a whole number, got {got}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        return int(value)

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.data.pop(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    def numbers(self, key: str, default: list[float], low: float, high: float) -> list[float]:
        value = self.data.pop(key, default)
        if not isinstance(value, list) or not value or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and low <= v <= high
            for v in value
        ):
            self.fail(key, f"expected a list of numbers between {low:g} and {high:g}")
        return [float(v) for v in value]

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.pop(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, key: str, kind: type[E], default: E) -> E:
        value = self.string(key, default.value)
        try:
            return kind(value)
        except ValueError:
            options = ", ".join(repr(m.value) for m in kind)
            self.fail(key, f"{value!r} is not one of {options}")

    def done(self) -> None:
        for key in self.data:
            guess = difflib.get_close_matches(key, self.known, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            self.fail(key, f"unknown key{hint}")


def _kind(value: object) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _line_of_decode_error(exc: tomllib.TOMLDecodeError) -> int | None:
    marker = "(at line "
    message = str(exc)
    if marker not in message:
        return None
    digits = message.split(marker, 1)[1].split(",", 1)[0]
    return int(digits) if digits.isdigit() else None
