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
        self.lines = text.splitlines()

    def line_of(self, dotted: str) -> int | None:
        """The line of ``a.b.key = ...`` (or of the header ``[a.b.key]``), if written.

        Items of an array of tables are addressed ``a.b[0].key``, ``a.b[1].key``, ...
        """
        table, _, key = dotted.rpartition(".")
        current, counts = "", dict[str, int]()
        for number, raw in enumerate(self.lines, start=1):
            line = raw.split("#", 1)[0].strip()
            if line.startswith("[["):
                name = line.strip("[]").strip()
                counts[name] = counts.get(name, -1) + 1
                current = f"{name}[{counts[name]}]"
            elif line.startswith("["):
                current = line.strip("[]").strip()
            else:
                if current == table and line.partition("=")[0].strip().strip('"') == key:
                    return number
                continue
            if current == dotted:
                return number
        return None


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
            self.fail(key, f"expected a whole number, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        return int(value)

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
