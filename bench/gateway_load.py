"""A gateway under load: many WebSocket clients sending messages and stops. Prints figures.

    python bench/gateway_load.py [--clients 200] [--sessions 50] [--seconds 60]
    python bench/gateway_load.py --crash-after 20     # kill -9 the gateway mid-load

With --crash-after, the gateway is killed (SIGKILL) that many seconds in, restarted, the
clients send again what was never acknowledged, and the script times how long until every
session answers a new message.

The gateway runs as a process of its own (the echo model answers after --delay-ms), on a
fresh home. Afterwards the store is checked: every acknowledged message has a fate, no
message is in a transcript twice, and `clawgate doctor` is healthy; the script exits 1 if
not. Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clawgate.testing import load as loadgen

CONFIG = """
[providers.echo]
kind = "echo"
delay_ms = {delay}
[queue]
mode = "collect"
debounce_ms = 0
"""


def start_gateway(home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    gateway = subprocess.Popen(
        [sys.executable, "-m", "clawgate", "--home", str(home), "gateway", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while (url := _url_of(home, gateway.pid)) is None:  # a killed one's file may linger
        if time.monotonic() > deadline or gateway.poll() is not None:
            raise SystemExit("the gateway did not start")
        time.sleep(0.05)
    return gateway, url, (home / "gateway.token").read_text().strip()


def _url_of(home: Path, pid: int) -> str | None:
    try:
        state = json.loads((home / "gateway.json").read_text())
    except (OSError, ValueError):
        return None
    return str(state["url"]) if state.get("pid") == pid else None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def sample_rss(pid: int, peak: list[int], until: float) -> None:
    while time.monotonic() < until:
        peak[0] = max(peak[0], await asyncio.to_thread(rss_kib, pid))
        await asyncio.sleep(0.5)


async def main(options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text(CONFIG.format(delay=options.delay_ms))
        gateways = [start_gateway(home)]
        try:
            return await measure(options, home, gateways)
        finally:
            for gateway, _, _ in gateways:
                gateway.terminate()
                gateway.wait(30)


Gateways = list[tuple[subprocess.Popen[bytes], str, str]]


async def measure(options: argparse.Namespace, home: Path, gateways: Gateways) -> int:
    gateway, url, token = gateways[0]
    peak = [0]
    sampler = asyncio.create_task(sample_rss(gateway.pid, peak,
                                             time.monotonic() + options.seconds + 5))
    stats = loadgen.LoadStats()
    started = time.monotonic()
    load = asyncio.create_task(loadgen.run_load(url, token, options.clients, options.sessions,
                                        options.seconds, stats=stats))
    if options.crash_after:
        await asyncio.sleep(options.crash_after)
        gateway.kill()
        gateway.wait(10)
    await load
    elapsed = time.monotonic() - started
    sampler.cancel()
    if options.crash_after:
        await recover(home, gateways, stats, options.sessions)
    settled = await loadgen.settle(home / "clawgate.db", 60)
    verdict = loadgen.verify(home / "clawgate.db", stats)
    doctor = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "clawgate", "--home", str(home), "doctor",
                         "--json"], capture_output=True, text=True, check=False)
    report(options, stats, elapsed, peak[0], verdict.fates)
    problems = [
        *(["messages still waiting after 60 s"] if not settled else []),
        *([f"{len(verdict.without_fate)} messages without a fate"]
          if verdict.without_fate else []),
        *([f"{len(verdict.repeated_in_transcript)} messages repeated in a transcript"]
          if verdict.repeated_in_transcript else []),
        *([f"unexpected errors: {dict(stats.errors)}"] if stats.errors else []),
        *(["doctor is not healthy"] if doctor.returncode != 0 else []),
    ]
    print("every acknowledged message has a fate, none is repeated in a transcript; "
          "doctor healthy" if not problems else
          "PROBLEMS: " + "; ".join(problems))
    return 1 if problems else 0


async def recover(home: Path, gateways: Gateways, stats: loadgen.LoadStats, sessions: int) -> None:
    """Restart after the kill, send again what was never acknowledged, time the recovery."""
    started = time.monotonic()
    gateway, url, token = start_gateway(home)
    gateways.append((gateway, url, token))
    unacked = len(stats.unacked)
    duplicates_before = stats.duplicates
    await loadgen.resend_unacked(url, token, stats)
    await loadgen.every_session_answers(url, token, sessions, within=60)
    print(f"kill -9 at load, restart: every one of {sessions} sessions answered "
          f"{time.monotonic() - started:.1f} s after the restart began; {unacked} "
          f"unacknowledged messages sent again, {stats.duplicates - duplicates_before} of "
          "them recognised as already received")


def report(options: argparse.Namespace, stats: loadgen.LoadStats, elapsed: float, rss_kib: int,
           fates: dict[str, int]) -> None:
    acked = len(stats.acked)
    print(f"{options.clients} clients on {options.sessions} sessions for {elapsed:.0f} s "
          f"(echo after {options.delay_ms} ms)")
    print(f"messages acknowledged  {acked} ({acked / elapsed:.0f}/s); stops {stats.stops}")
    print(f"ack latency            p50 {stats.percentile(0.5):.1f} ms   "
          f"p99 {stats.percentile(0.99):.1f} ms   (each client waits for its ack: at "
          "saturation this is mostly queueing)")
    print(f"events delivered       {stats.events} ({stats.events / elapsed:.0f}/s)")
    print(f"gateway peak RSS       {rss_kib / 1024:.0f} MiB")
    print(f"fates                  {fates}")
    print(f"expected errors        {dict(stats.expected_errors) or 'none'}; "
          f"unexpected {dict(stats.errors) or 'none'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A gateway under load.")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--crash-after", type=float, default=0,
                        help="kill -9 the gateway this many seconds in, then restart it")
    sys.exit(asyncio.run(main(parser.parse_args())))
