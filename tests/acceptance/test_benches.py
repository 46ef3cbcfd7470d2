"""The benchmarks still run and print their figures (a smoke run; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(("script", "args", "figures"), [
    ("turns.py", ["--quick"],
     ["turns/s", "store time per turn", "sessions list", "clawgate --help"]),
    ("providers.py", ["--turns", "3"], ["through clawgate", "first token"]),
    ("gateway_load.py", ["--clients", "6", "--sessions", "3", "--seconds", "2"],
     ["messages acknowledged", "doctor healthy"]),
    ("gateway_quiet.py", ["--idle-seconds", "1", "--others", "0,5", "--followers", "5",
                          "--turns", "3"],
     ["idle, clawgate chat", "idle, gateway", "following other sessions",
      "following every session"]),
    ("feed_follow.py", ["--sessions", "1000"], ["following 1000 sessions", "the slowest"]),
])
def test_a_benchmark_runs_and_prints_its_figures(
    script: str, args: list[str], figures: list[str]
) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for figure in figures:
        assert figure in done.stdout, done.stdout
