"""Run ``clawgate`` with the import of the ``openai`` SDK held at a gate: a test's tool.

    python import_gate.py GATE_DIR [clawgate arguments...]

When a thread starts importing ``openai``, the gate writes that thread's name to
``GATE_DIR/importing`` and holds the import until ``GATE_DIR/open`` exists (at most
``HOLD_AT_MOST_S``). A test sees so what waits for the import and what does not: an import
made on the event loop's thread freezes everything the process serves until the gate opens.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

HELD = "openai"
HOLD_AT_MOST_S = 60.0


class ImportGate(importlib.abc.MetaPathFinder):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == HELD:
            (self.folder / "importing").write_text(threading.current_thread().name)
            deadline = time.monotonic() + HOLD_AT_MOST_S
            while not (self.folder / "open").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return None  # the usual finders find it


if __name__ == "__main__":
    sys.meta_path.insert(0, ImportGate(Path(sys.argv[1])))
    sys.argv = ["clawgate", *sys.argv[2:]]
    runpy.run_module("clawgate", run_name="__main__", alter_sys=True)
