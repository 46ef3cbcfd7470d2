"""What a gateway costs while little happens: idle, and one busy session among many clients.

    python bench/gateway_quiet.py [--idle-seconds 10] [--others 0,200,1000]
                                  [--followers 0,20,200] [--turns 100]

Prints the gateway's CPU (user + system, from /proc) while it is idle with a few clients
connected, then the CPU each turn of one session costs while other clients follow other
sessions (they are sent nothing), and while clients follow every session, as the web chat
does (each is sent the turn's events). The gateway runs as a process of its own on a fresh
home, with the echo model; Linux only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(pid: int, seconds: float, clients: int) -> None:
    await asyncio.sleep(2)  # start-up work (recovery, SDKs, first connections) is over
    cpu, wall = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    share = (cpu_seconds(pid) - cpu) / (time.monotonic() - wall)
    print(f"idle, {clients} clients connected     {100 * share:5.2f}% of a core "
          f"over {seconds:.0f} s")


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
        gateway, url, token = start_gateway(home)
        try:
            few = [await listen(url, token, [f"idle-{n}"]) for n in range(3)]
            await idle(gateway.pid, options.idle_seconds, len(few))
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
