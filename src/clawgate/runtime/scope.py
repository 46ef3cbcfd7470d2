"""Which sessions a runtime serves. The gateway serves all; a one-shot agent only its own."""

from __future__ import annotations

from typing import Protocol

from clawgate.domain import Fate
from clawgate.store.protocol import Store


class Scope(Protocol):
    async def narrow(self) -> frozenset[str] | None:
        """Session ids to look at for waiting work, or None for every session."""
        ...

    async def wants(self, session_id: str) -> bool:
        """Whether to take the next waiting message of this session."""
        ...

    def accepted(self, session_id: str, message_id: str) -> None:
        """A message this runtime accepted (some scopes serve only those)."""
        ...


class ServeAll:
    """The gateway: every session with waiting messages."""

    async def narrow(self) -> frozenset[str] | None:
        return None

    async def wants(self, session_id: str) -> bool:
        return True

    def accepted(self, session_id: str, message_id: str) -> None:
        return None


class ServeOwnMessages:
    """A one-shot process: serve a session only while a message it accepted still waits.

    It answers whatever waits ahead of its own message (order matters), then leaves the rest
    of the session to whoever accepted it.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._mine: dict[str, set[str]] = {}

    async def narrow(self) -> frozenset[str] | None:
        return frozenset(self._mine)

    def accepted(self, session_id: str, message_id: str) -> None:
        self._mine.setdefault(session_id, set()).add(message_id)

    async def wants(self, session_id: str) -> bool:
        waiting = self._mine.get(session_id, set())
        for message_id in list(waiting):
            message = await self._store.get_message(message_id)
            if message is None or message.fate is not Fate.PENDING:
                waiting.discard(message_id)
        if not waiting:
            self._mine.pop(session_id, None)
        return bool(waiting)


class ServeKeys:
    """An interactive chat: every waiting message of its sessions, whoever sent it."""

    def __init__(self, store: Store, keys: frozenset[str]) -> None:
        self._store = store
        self._keys = keys

    async def narrow(self) -> frozenset[str] | None:
        sessions = [await self._store.get_session(key) for key in sorted(self._keys)]
        return frozenset(s.id for s in sessions if s is not None)

    def accepted(self, session_id: str, message_id: str) -> None:
        return None

    async def wants(self, session_id: str) -> bool:
        session = await self._store.get_session_by_id(session_id)
        return session is not None and session.archived_at is None and session.key in self._keys
