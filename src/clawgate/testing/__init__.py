"""Fakes that plug into clawgate through the same interfaces as the real parts.

* ``MemoryStore`` / ``MemoryDatabase``: the store, in memory (passes the conformance suite).
* ``ManualClock``: a clock that moves only when told, for leases and deadlines.
* ``ScriptedProvider``: a model provider whose every call waits for the test's script.
* ``RecordingSender``: a channel that pushes replies, records them, and can have outages.
"""

from clawgate.store.memory import MemoryDatabase, MemoryStore
from clawgate.testing.clock import ManualClock
from clawgate.testing.scripted import ScriptedCall, ScriptedProvider
from clawgate.testing.sender import RecordingSender

__all__ = [
    "ManualClock",
    "MemoryDatabase",
    "MemoryStore",
    "RecordingSender",
    "ScriptedCall",
    "ScriptedProvider",
]
