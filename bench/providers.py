"""What clawgate adds to a streamed turn. Prints figures; asserts nothing.

    python bench/providers.py [--turns 300] [--words 20]

A fake OpenAI-compatible server runs in a process of its own (as a real provider would) and
streams a reply of ``--words`` chunks. The same turns are taken twice:

* direct: the official ``openai`` SDK calls the server, keeping the conversation itself
  (the same last 20 entries the gateway sends, so both send the same requests);
* through clawgate: a message is sent to a runtime (SQLite store, the router, the same SDK
  underneath) and followed to its recorded end.

For each: time to first token and total time, p50 and p99. The difference is clawgate's
overhead per turn: persisting the message, claiming and starting the run, reading the
context, routing, recording the reply and the usage.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from clawgate.domain import ModelRef, QueueMode, QueueSettings
from clawgate.providers.registry import build
from clawgate.providers.settings import HttpProviderSettings, Profile, ProviderKind
from clawgate.runtime.bus import ReplyDelta
from clawgate.runtime.runtime import Runtime
from clawgate.runtime.settings import RuntimeSettings
from clawgate.store.sqlite import SqliteStore

Timing = tuple[float, float]  # seconds to the first token, seconds in all


CONTEXT = 20


async def direct_turn(
    client: openai.AsyncOpenAI, history: list[Any], n: int, raw: bool = False
) -> Timing:
    """A chatbot on the bare SDK: keep the history, send it, stream the reply.

    ``raw`` uses the SDK's plain request method (as clawgate does) instead of
    ``chat.completions.create``, whose typed-params transform costs time per message.
    """
    started = time.perf_counter()
    first = 0.0
    history.append({"role": "user", "content": f"question {n}"})
    body = {"model": "bench", "messages": history[-CONTEXT:], "stream": True,
            "stream_options": {"include_usage": True}}
    if raw:
        chunks = await client.post(
            "/chat/completions", body=body, cast_to=ChatCompletion, stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk])
    else:
        chunks = await client.chat.completions.create(
            model="bench", messages=history[-CONTEXT:], stream=True,
            stream_options={"include_usage": True})
    reply = []
    async for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - started
            reply.append(chunk.choices[0].delta.content)
    history.append({"role": "assistant", "content": "".join(reply)})
    return first, time.perf_counter() - started


async def gateway_turn(runtime: Runtime, n: int) -> Timing:
    events = runtime.subscribe("bench")
    started = time.perf_counter()
    accepted = await runtime.send("bench", f"question {n}")
    first = 0.0
    while not first:
        event = await events.get()
        if isinstance(event, ReplyDelta):
            first = time.perf_counter() - started
    events.close()
    outcome = await runtime.wait_for(accepted.message.id, within=30)
    assert outcome.run is not None
    assert outcome.run.status == "done", outcome.run.error
    return first, time.perf_counter() - started


async def measure(turn: Callable[[int], Awaitable[Timing]], turns: int) -> list[Timing]:
    for n in range(20):  # warm up (connections, imports, caches)
        await turn(n)
    return [await turn(n) for n in range(turns)]


def summary(label: str, timings: list[Timing]) -> tuple[float, float]:
    firsts = sorted(t[0] * 1000 for t in timings)
    totals = sorted(t[1] * 1000 for t in timings)
    p99 = min(len(totals) - 1, round(len(totals) * 0.99))
    first50, total50 = statistics.median(firsts), statistics.median(totals)
    print(f"{label:<18} first token p50 {first50:6.2f} ms  p99 {firsts[p99]:6.2f} ms   "
          f"total p50 {total50:6.2f} ms  p99 {totals[p99]:6.2f} ms")
    return first50, total50


async def main(url: str, turns: int, words: int) -> None:
    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=f"{url}/v1", max_retries=0)
    typical: list[Any] = []
    plain: list[Any] = []
    direct = summary("SDK create()", await measure(
        lambda n: direct_turn(client, typical, n), turns))
    cheapest = summary("SDK post()", await measure(
        lambda n: direct_turn(client, plain, n, raw=True), turns))
    await client.close()
    with tempfile.TemporaryDirectory() as tmp:
        through = summary("through clawgate", await through_gateway(Path(tmp), url, turns))
    print(f"({turns} turns, {words} chunks each, {CONTEXT} entries of context; p50)")
    for label, base in (("create()", direct), ("post()", cheapest)):
        print(f"clawgate vs the SDK's {label}: first token {through[0] - base[0]:+.2f} ms, "
              f"total {through[1] - base[1]:+.2f} ms")


async def through_gateway(folder: Path, url: str, turns: int) -> list[Timing]:
    providers = build([HttpProviderSettings(
        "fake", ProviderKind.OPENAI, (Profile("default", "bench", "sk-bench"),),
        base_url=f"{url}/v1")])
    settings = RuntimeSettings(
        default_model=ModelRef("fake", "bench"),
        queue=QueueSettings(mode=QueueMode.FOLLOWUP, debounce_ms=0),
        context_entries=CONTEXT,
    )
    store = await SqliteStore.open(folder / "bench.db")
    runtime = Runtime(store, providers, settings)
    await runtime.start()
    try:
        return await measure(lambda n: gateway_turn(runtime, n), turns)
    finally:
        await runtime.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="What clawgate adds to a streamed turn.")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--words", type=int, default=20, help="chunks in each reply")
    options = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "clawgate.testing.model_server",
                               str(options.words)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        asyncio.run(main(server.stdout.readline().strip(), options.turns, options.words))
    finally:
        server.terminate()
        server.wait(5)
