"""The queue settings through the gateway: what a client is told about messages sent during a
reply, and what becomes of them."""

from __future__ import annotations

from typing import Any

from clawgate.gateway.client import GatewayClient


async def _ended(client: GatewayClient, run_id: str) -> None:
    while True:
        frame = await client.next_event()
        if frame["payload"].get("runId") == run_id and frame["event"] in (
                "run.done", "run.failed", "run.killed", "run.interrupted"):
            return


async def _message(client: GatewayClient, session: str, message_id: str) -> dict[str, Any]:
    shown = await client.request("sessions.get", session=session)
    found: dict[str, Any] = {m["id"]: m for m in shown["inbound"]}[message_id]
    return found


async def test_a_summarized_message_names_the_run_that_was_told_what_it_said(
    client: GatewayClient,
) -> None:
    await client.request("sessions.patch", session="s1", model="slow/echo",
                         queue={"mode": "collect", "cap": 1, "drop": "summarize"})
    first = await client.request("chat.send", session="s1", text="one")
    dropped = await client.request("chat.send", session="s1", text="a")
    waiting = await client.request("chat.send", session="s1", text="b")  # drops "a"
    assert first["queuedBehind"] is None
    assert (await _message(client, "s1", dropped["messageId"]))["fate"] == "dropped"

    answered = await _message(client, "s1", waiting["messageId"])
    while answered["runId"] is None:  # until a run takes "b" (bounded: the next_event wait)
        await client.next_event()
        answered = await _message(client, "s1", waiting["messageId"])
    await _ended(client, answered["runId"])

    summarized = await _message(client, "s1", dropped["messageId"])
    assert (summarized["reason"], summarized["runId"], summarized["summaryCleared"]) == (
        "queue_full_summarized", answered["runId"], None)
    history = await client.request("chat.history", session="s1")
    assert ("note", "[1 earlier message was dropped from a full queue: a]") in [
        (e["role"], e["text"]) for e in history["entries"] if e["runId"] == answered["runId"]]


async def test_the_ack_says_the_mode_of_the_reply_in_progress_not_a_later_one(
    client: GatewayClient,
) -> None:
    await client.request("sessions.patch", session="s1", model="hang/echo",
                         queue={"mode": "steer"})
    first = await client.request("chat.send", session="s1", text="one")
    while (frame := await client.next_event())["event"] != "run.running":
        pass
    await client.request("sessions.patch", session="s1", queue={"mode": "followup"})

    ack = await client.request("chat.send", session="s1", text="two")

    assert ack["queuedBehind"] == frame["payload"]["runId"]
    assert ack["queueMode"] == "steer"  # handed to the reply in progress, as it will be
    patched = await client.request("sessions.get", session="s1", limit=1)
    assert patched["queue"]["mode"] == "followup"  # the mode of the next replies
    assert first["queueMode"] == "steer"
    await client.request("chat.abort", session="s1")


async def test_queue_names_are_taken_in_any_case_as_the_chat_takes_them(
    client: GatewayClient,
) -> None:
    patched = await client.request("sessions.patch", session="s1",
                                   queue={"mode": "STEER", "drop": "Old"})
    typed = await client.request("chat.send", session="s2", text="/queue STEER drop:Old")

    assert (patched["queue"]["mode"], patched["queue"]["drop"]) == ("steer", "old")
    assert typed["reply"].startswith("queue: steer (")
    assert "drop old" in typed["reply"]
