"""What a gateway costs while little happens: idle, and one busy session among many clients.

    python bench/gateway_quiet.py [--idle-seconds 10] [--others 0,200,1000]
                                  [--followers 0,20,200] [--turns 100]

Prints the CPU (every thread's, from the scheduler's counts in /proc) of an idle
`clawgate chat` working in-process and of an idle gateway with a few clients connected,
then the gateway's CPU for each turn of one session while other clients follow other
sessions (they are sent nothing), and while clients follow every session, as the web chat
does (each is sent the turn's events). The gateway runs as a process of its own on a fresh
home, with the echo model; Linux only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clawgate.gateway.client import GatewayClient
from gateway_load import start_gateway

CONFIG = """
[queue]
mode = "followup"
debounce_ms = 0
"""
TEXT = "hello " + "word " * 40  # the echo model sends its reply back a word at a time


def cpu_seconds(pid: int) -> float:
    """The CPU time of every thread of ``pid`` (nanosecond counts, from the scheduler)."""
    total = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            total += int((thread / "schedstat").read_text().split()[0])
    return total / 1e9


async def idle(pid: int, seconds: float, what: str) -> None:
    await asyncio.sleep(2)  # start-up work (recovery, SDKs, first connections) is over
    cpu, wall = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    share = (cpu_seconds(pid) - cpu) / (time.monotonic() - wall)
    print(f"idle, {what:<30} {100 * share:5.2f}% of a core over {seconds:.0f} s")


async def idle_chat(home: Path, seconds: float) -> None:
    """``clawgate chat`` working in-process (no gateway), waiting for the user to type."""
    chat = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clawgate", "--home", str(home), "chat",
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(1)
        await idle(chat.pid, seconds, "clawgate chat (in-process)")
    finally:
        assert chat.stdin is not None
        chat.stdin.close()  # Ctrl-D
        async with asyncio.timeout(30):
            await chat.wait()


async def listen(url: str, token: str, sessions: list[str] | None) -> GatewayClient:
    """A client following ``sessions`` (None: all) that reads and drops what it is sent."""
    client = await GatewayClient.connect(url, token)
    if sessions is None:
        await client.request("events.subscribe")
    else:
        await client.request("events.subscribe", sessions=sessions)
    return client


def drop_events(clients: list[GatewayClient]) -> None:
    for client in clients:
        while not client.event_frames.empty():
            client.event_frames.get_nowait()


async def per_turn(pid: int, sender: GatewayClient, turns: int) -> float:
    """Gateway CPU milliseconds per turn of one session, turn after turn."""
    cpu = cpu_seconds(pid)
    for _ in range(turns):
        await sender.request("chat.send", session="busy", text=TEXT)
        while (await sender.next_event(within=30))["event"] != "run.done":
            pass
    return (cpu_seconds(pid) - cpu) * 1000 / turns


async def fan_out(pid: int, url: str, token: str, options: argparse.Namespace,
                  follow_all: bool) -> None:
    counts = options.followers if follow_all else options.others
    clients: list[GatewayClient] = []
    sender = await GatewayClient.connect(url, token)
    try:
        for count in counts:
            while len(clients) < count:
                clients.append(await listen(url, token, None if follow_all
                                            else [f"other-{len(clients)}"]))
            await asyncio.sleep(1)
            drop_events(clients)
            cost = await per_turn(pid, sender, options.turns)
            who = "following every session" if follow_all else "following other sessions"
            print(f"one session's turn, {count:5d} clients {who:<26} "
                  f"{cost:6.2f} ms gateway CPU per turn")
            drop_events(clients)
    finally:
        for client in [sender, *clients]:
            await client.close()


async def main(options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text(CONFIG)
        await idle_chat(home, options.idle_seconds)
        gateway, url, token = start_gateway(home)
        try:
            few = [await listen(url, token, [f"idle-{n}"]) for n in range(3)]
            await idle(gateway.pid, options.idle_seconds, "gateway, 3 clients connected")
            for client in few:
                await client.close()
            await fan_out(gateway.pid, url, token, options, follow_all=False)
            await fan_out(gateway.pid, url, token, options, follow_all=True)
        finally:
            gateway.terminate()
            gateway.wait(30)
    return 0


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A gateway's cost while little happens.")
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--others", type=counts, default=[0, 200, 1000])
    parser.add_argument("--followers", type=counts, default=[0, 20, 200])
    parser.add_argument("--turns", type=int, default=100)
    sys.exit(asyncio.run(main(parser.parse_args())))
