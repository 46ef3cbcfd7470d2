"""Every store the conformance suite runs against, behind one small factory.

A backend is one database; ``handle()`` opens another connection to it, which is how tests
play several processes sharing a database (and crash one by closing its handle).
"""

from __future__ import annotations

from pathlib import Path

from clawgate.store.protocol import Store
from clawgate.store.sqlite import SqliteStore
from clawgate.testing import ManualClock, MemoryDatabase, MemoryStore

STORE_KINDS = ("memory", "sqlite")


class StoreBackend:
    def __init__(self, kind: str, directory: Path, clock: ManualClock) -> None:
        self.kind = kind
        self.clock = clock
        self.path = directory / "clawgate.db"  # the SQLite file
        self.memory = MemoryDatabase()  # the memory store's database
        self._handles: list[Store] = []

    async def handle(self) -> Store:
        store: Store
        if self.kind == "memory":
            store = MemoryStore(self.memory, self.clock)
        elif self.kind == "sqlite":
            store = await SqliteStore.open(self.path, self.clock)
        else:
            raise ValueError(f"unknown store kind {self.kind!r}")
        self._handles.append(store)
        return store

    async def close(self) -> None:
        for store in self._handles:
            await store.close()
