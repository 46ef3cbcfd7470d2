"""The WebSocket protocol against a real gateway: frames, methods, events, errors, auth."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clawgate.gateway.api import OTHER_CHANNELS
from clawgate.gateway.client import GatewayClient, GatewayError
from clawgate.gateway.server import RunningGateway
from tests.gateway.conftest import restarted as _restarted


async def _events_until(client: GatewayClient, done: str, run_id: str | None = None
                        ) -> list[dict[str, Any]]:
    seen = []
    while True:
        frame = await client.next_event()
        seen.append(frame)
        if frame["event"] == done and (run_id is None or frame["payload"]["runId"] == run_id):
            return seen


async def _run_of(client: GatewayClient, message_id: str) -> str:
    while True:
        frame = await client.next_event()
        if frame["event"] in ("message.answered", "message.merged") and (
                frame["payload"]["messageId"] == message_id):
            return str(frame["payload"]["runId"])


async def test_a_message_is_acknowledged_and_its_run_streams_as_events(
    client: GatewayClient,
) -> None:
    ack = await client.request("chat.send", session="s1", text="hello gateway")
    assert (ack["command"], ack["duplicate"], ack["fate"]) == (False, False, "pending")
    events = await _events_until(client, "run.done")

    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["session.created", "message.pending", "run.queued"]
    assert "run.running" in kinds
    deltas = [e for e in events if e["event"] == "run.delta"]
    assert "".join(e["payload"]["text"] for e in deltas) == "echo: hello gateway"
    assert all(e["seq"] is None for e in deltas)
    stored = [e["seq"] for e in events if e["event"] != "run.delta"]
    assert stored == sorted(stored)
    history = await client.request("chat.history", session="s1")
    assert [(e["role"], e["text"]) for e in history["entries"]] == [
        ("user", "hello gateway"), ("assistant", "echo: hello gateway")]
    assert history["session"]["status"] == "done"


async def test_a_run_is_reported_running_before_any_of_its_text(client: GatewayClient) -> None:
    sessions = [f"order-{n}" for n in range(12)]
    await client.request("events.subscribe", sessions=sessions)
    for key in sessions:
        await client.request("chat.send", session=key, text=f"hi {key}")
    seen: list[tuple[str, str]] = []
    ended = 0
    while ended < len(sessions):
        frame = await client.next_event()
        if frame["event"] in ("run.running", "run.delta", "run.done"):
            seen.append((frame["event"], frame["payload"]["runId"]))
        ended += frame["event"] == "run.done"

    for run_id in {run for _, run in seen}:
        kinds = [kind for kind, run in seen if run == run_id]
        assert (kinds[0], kinds[-1]) == ("run.running", "run.done"), kinds
        assert set(kinds[1:-1]) == {"run.delta"}, kinds


async def test_history_mid_reply_holds_the_reply_so_far_and_the_text_that_follows_it(
    client: GatewayClient,
) -> None:
    await client.request("sessions.patch", session="mid", model="trickle/echo")
    idle = await client.request("chat.history", session="mid")
    assert idle["partial"] is None
    await client.request("chat.send", session="mid", text=" ".join(f"w{n}" for n in range(12)))
    deltas = [e for e in await _events_until(client, "run.delta") if e["event"] == "run.delta"]
    deltas += [e for e in await _events_until(client, "run.delta") if e["event"] == "run.delta"]
    history = await client.request("chat.history", session="mid")
    partial = history["partial"]
    assert partial["runId"] == deltas[0]["payload"]["runId"]
    assert partial["text"].startswith("echo: w0")
    assert [e["role"] for e in history["entries"]] == ["user"]  # the reply is not stored yet
    deltas += [e for e in await _events_until(client, "run.done") if e["event"] == "run.delta"]

    pieces = [(e["payload"]["offset"], e["payload"]["text"]) for e in deltas]
    assert [offset for offset, _ in pieces] == [  # each piece starts where the last ended
        sum(len(text) for _, text in pieces[:n]) for n in range(len(pieces))]
    reply = partial["text"]  # the reply so far, then what came after it
    for offset, text in pieces:
        reply += text[max(0, partial["end"] - offset):]
    stored = await client.request("chat.history", session="mid")
    assert reply == stored["entries"][-1]["text"] == "echo: " + " ".join(
        f"w{n}" for n in range(12))
    assert stored["partial"] is None


async def test_chat_send_with_an_idempotency_key_sends_nothing_twice(
    client: GatewayClient,
) -> None:
    first = await client.request("chat.send", session="s1", text="once",
                                 idempotencyKey="k-1")
    await _events_until(client, "run.done")
    again = await client.request("chat.send", session="s1", text="once",
                                 idempotencyKey="k-1")

    assert again["messageId"] == first["messageId"]
    assert again["duplicate"] is True
    got = await client.request("sessions.get", session="s1")
    assert len(got["inbound"]) == 1
    assert len(got["runs"]) == 1

    elsewhere = await client.request("chat.send", session="s2", text="other",
                                     idempotencyKey="k-1")
    assert elsewhere["duplicate"] is False
    assert elsewhere["messageId"] != first["messageId"]


async def test_a_repeated_new_or_reset_starts_one_fresh_conversation_not_two(
    client: GatewayClient,
) -> None:
    await client.request("chat.send", session="s1", text="remember this")
    await _events_until(client, "run.done")
    old_id = (await client.request("sessions.get", session="s1"))["sessionId"]

    replies = [(await client.request("chat.send", session="s1", text="/new",
                                     idempotencyKey="reset-1"))["reply"] for _ in range(2)]
    fresh_id = (await client.request("sessions.get", session="s1"))["sessionId"]
    assert fresh_id != old_id
    assert replies[0].startswith(f"new session {fresh_id} for 's1'")
    assert replies[1] == ("session 's1' is already fresh (nothing was said since it started); "
                          "nothing changed")

    again = await client.request("sessions.reset", session="s1")
    assert (again["sessionId"], again["previousSessionId"], again["alreadyFresh"]) == (
        fresh_id, None, True)
    await client.request("chat.send", session="s1", text="a new topic")
    reset = await client.request("sessions.reset", session="s1")
    assert (reset["previousSessionId"], reset["alreadyFresh"]) == (fresh_id, False)
    assert reset["sessionId"] not in (old_id, fresh_id)


async def test_a_reconnecting_client_gets_exactly_what_it_missed(
    gateway: RunningGateway, client: GatewayClient,
) -> None:
    await client.request("events.subscribe", sessions=["s1"])
    await client.request("chat.send", session="s1", text="first")
    seen = await _events_until(client, "run.done")
    last_seq = max(e["seq"] for e in seen if e["seq"] is not None)
    await client.close()

    async with await GatewayClient.connect(gateway.url, gateway.token) as other:
        await other.request("chat.send", session="s1", text="while you were away")
        await other.request("chat.send", session="s2", text="another session")
        await _events_until(other, "run.done")
        await _events_until(other, "run.done")

    async with await GatewayClient.connect(gateway.url, gateway.token) as back:
        resumed = await back.request("events.subscribe", sessions=["s1"], after=last_seq)
        missed = [await back.next_event() for _ in range(resumed["replayed"])]

    assert resumed["replayed"] == 5
    assert [e["event"] for e in missed] == [
        "message.pending", "run.queued", "message.answered", "run.running", "run.done"]
    assert all(e["payload"]["session"] == "s1" for e in missed)
    assert [e["seq"] for e in missed] == sorted(e["seq"] for e in missed)
    assert missed[0]["seq"] > last_seq


async def test_a_seq_from_another_database_resets_the_client_and_it_still_gets_events(
    client: GatewayClient,
) -> None:
    await client.request("chat.send", session="s1", text="first")
    await _events_until(client, "run.done")

    resumed = await client.request("events.subscribe", sessions=["s1"], after=999_999)
    assert resumed["reset"] is True
    assert resumed["replayed"] == 0
    assert resumed["lastSeq"] < 999_999
    await client.request("chat.send", session="s1", text="second")
    ended = await _events_until(client, "run.done")
    assert ended[-1]["seq"] > resumed["lastSeq"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "bad_frame"),
        ("[1, 2, 3]", "bad_frame"),
        ('{"type": "req", "method": "status"}', "bad_frame"),
        ('{"type": "req", "id": 7}', "bad_frame"),
        ('{"type": "res", "id": 7, "method": "status"}', "bad_frame"),
        ('{"type": "req", "id": true, "method": "status"}', "bad_frame"),
        ('{"type": "req", "id": 7, "method": "status", "extra": 1}', "bad_frame"),
        ('{"type": "req", "id": 7, "method": "status", "params": [1]}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.fly", "params": {}}', "unknown_method"),
        ('{"type": "req", "id": 7, "method": "chat.send", '
         '"params": {"session": "s1", "text": 123}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.send", '
         '"params": {"session": "s1"}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.send", '
         '"params": {"session": "bad key", "text": "hi"}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.send", '
         '"params": {"session": "s1", "text": "   "}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.send", '  # a lone surrogate: not storable
         '"params": {"session": "s1", "text": "hi \\ud800"}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "sessions.list", '
         '"params": {"limit": "5"}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "sessions.list", '
         '"params": {"limit": 5, "colour": "red"}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "sessions.get", '
         '"params": {"session": "nobody"}}', "unknown_session"),
        ('{"type": "req", "id": 7, "method": "events.subscribe", '
         '"params": {"sessions": ["has space"]}}', "invalid_params"),
        ('{"type": "req", "id": 7, "method": "chat.send", '
         '"params": {"session": "s1", "text": "hi", "channel": "Not A Label"}}',
         "invalid_params"),
    ],
)
async def test_bad_frames_get_a_typed_error_and_the_connection_stays_usable(
    client: GatewayClient, frame: str, code: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        await client.send_raw(frame, request_id=json.loads(frame).get("id")
                              if frame.startswith("{") else None)
    assert caught.value.code == code
    assert (await client.request("status"))["version"]
    assert await client.request("sessions.list") == {"sessions": [], "total": 0}


@pytest.mark.parametrize(
    ("method", "params", "field", "problem"),
    [
        ("chat.send", {"session": "s1", "text": "   "}, "text", "the message is empty"),
        ("chat.send", {"session": "s1", "text": "a\x00b"}, "text",
         "the message contains a NUL character"),
        ("chat.send", {"session": "s1", "text": "/model bogus/x"}, "text",
         "no provider named 'bogus'"),
        ("sessions.patch", {"session": "s1", "model": "bogus/x"}, "model",
         "no provider named 'bogus'"),
        ("chat.send", {"session": "s1", "text": "hi", "idempotency_key": "k-1"},
         "idempotency_key", "Extra inputs are not permitted"),
        ("sessions.patch", {"session": "s1", "queue": {"debounce_ms": 0}},
         "queue.debounce_ms", "Extra inputs are not permitted"),
    ],
)
async def test_refused_input_names_the_parameter_and_the_problem_and_changes_nothing(
    client: GatewayClient, method: str, params: dict[str, Any], field: str, problem: str,
) -> None:
    with pytest.raises(GatewayError) as caught:
        await client.request(method, **params)

    assert caught.value.code == "invalid_params"
    assert isinstance(caught.value.details, list)
    assert [d["field"] for d in caught.value.details] == [field]
    assert caught.value.details[0]["problem"].startswith(problem)
    assert await client.request("sessions.list") == {"sessions": [], "total": 0}


async def test_a_request_id_is_a_string_or_an_integer(client: GatewayClient) -> None:
    for request_id in ("a-1", 12):
        assert (await client.send_raw({"type": "req", "id": request_id, "method": "status"}))[
            "version"]
    with pytest.raises(GatewayError) as caught:
        await client.send_raw('{"type": "req", "id": 1.5, "method": "status"}', request_id=1.5)
    assert (caught.value.code, str(caught.value)) == (
        "bad_frame", 'a request needs an "id" (string or integer)')


async def test_an_oversized_frame_is_refused_and_the_connection_stays_usable(
    client: GatewayClient,
) -> None:
    huge = json.dumps({"type": "req", "id": 9, "method": "chat.send",
                       "params": {"session": "s1", "text": "x" * 2_000_000}})
    with pytest.raises(GatewayError) as caught:
        await client.send_raw(huge, request_id=9)
    assert caught.value.code == "frame_too_large"
    ack = await client.request("chat.send", session="s1", text="still here")
    assert ack["fate"] == "pending"


async def test_abort_stops_a_hanging_run_within_a_second(client: GatewayClient) -> None:
    await client.request("sessions.patch", session="s1", model="hang/echo")
    ack = await client.request("chat.send", session="s1", text="hang please")
    run_id = await _run_of(client, ack["messageId"])
    await _events_until(client, "run.running", run_id)

    started = time.monotonic()
    stopped = await client.request("chat.abort", session="s1")
    ended = await _events_until(client, "run.killed", run_id)

    assert time.monotonic() - started < 1.0
    assert (stopped["status"], stopped["runId"]) == ("killed", run_id)
    assert ended[-1]["payload"]["status"] == "killed"


async def test_a_compact_that_takes_long_holds_up_no_request_sent_after_it(
    client: GatewayClient,
) -> None:
    for text in ("one", "two", "three"):
        await client.request("chat.send", session="s1", text=text)
        await _events_until(client, "run.done")
    await client.request("sessions.patch", session="s1", model="hang/echo")  # never summarises
    compacting = asyncio.ensure_future(client.request("chat.send", session="s1", text="/compact"))
    later = asyncio.gather(  # the same connection: a page switching session, and typing on
        client.request("chat.history", session="s1"),
        client.request("chat.send", session="s2", text="/status"),
        client.request("chat.send", session="s2", text="a message meanwhile"))
    either: set[asyncio.Future[Any]] = {compacting, later}
    done, _ = await asyncio.wait(either, timeout=10,  # (a bound, not a timing)
                                 return_when=asyncio.FIRST_COMPLETED)

    assert done == {later}
    history, status, sent = later.result()
    assert [e["text"] for e in history["entries"] if e["role"] == "user"] == [
        "one", "two", "three"]
    assert (status["command"], sent["fate"]) == (True, "pending")
    stopped = await client.request("chat.abort", session="s1")
    assert stopped["compactionStopped"]
    assert (await compacting)["reply"].startswith("compaction stopped")


async def test_sessions_can_be_listed_patched_reset_and_deleted(client: GatewayClient) -> None:
    await client.request("chat.send", session="s1", text="hi")
    await _events_until(client, "run.done")
    patched = await client.request("sessions.patch", session="s1", model="slow/echo",
                                   queue={"mode": "collect", "debounceMs": 0})
    assert (patched["modelProvider"], patched["model"]) == ("slow", "echo")
    assert patched["queue"] == {"mode": "collect", "debounceMs": 0, "cap": 20,
                                "drop": "summarize"}
    capped = await client.request("sessions.patch", session="s1", queue={"cap": 3})
    assert capped["queue"] == {**patched["queue"], "cap": 3}  # only that field changed
    for bad in ({"model": "nowhere/x"}, {"queue": {"mode": "sideways"}},
                {"queue": {"mode": 3}}):
        with pytest.raises(GatewayError) as caught:
            await client.request("sessions.patch", session="s1", **bad)
        assert caught.value.code == "invalid_params"

    reset = await client.request("sessions.reset", session="s1")
    assert reset["sessionId"] != reset["previousSessionId"]
    listed = await client.request("sessions.list")
    assert [(s["key"], s["sessionId"]) for s in listed["sessions"]] == [
        ("s1", reset["sessionId"])]
    await client.request("chat.send", session="s2", text="another")
    listed = await client.request("sessions.list", limit=1)
    assert ([s["key"] for s in listed["sessions"]], listed["total"]) == (["s2"], 2)
    await client.request("sessions.delete", session="s2")
    deleted = await client.request("sessions.delete", session="s1")
    assert deleted["archivedSessionId"] == reset["sessionId"]
    assert await client.request("sessions.list") == {"sessions": [], "total": 0}
    models = await client.request("models.list")
    assert models["default"] == "echo/echo"
    assert {p["name"] for p in models["providers"]} == {"echo", "slow", "hang", "trickle", "broken"}


async def test_without_the_token_nothing_is_served_but_health(gateway: RunningGateway) -> None:
    for token in (None, "wrong-token"):
        with pytest.raises(GatewayError) as caught:
            await GatewayClient.connect(gateway.url, token)
        assert caught.value.code == "unauthorized"
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"ready": True}
        for path in ("/metrics", "/v1/models"):
            response = await http.get(path, headers={"Authorization": "Bearer nope"})
            assert response.status_code == 401
        refused = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 401
    assert await gateway.runtime.store.list_sessions() == []  # nothing happened


async def test_metrics_count_runs_and_queue_depth(
    gateway: RunningGateway, client: GatewayClient
) -> None:
    await client.request("chat.send", session="s1", text="hi")
    await _events_until(client, "run.done")
    await client.request("sessions.patch", session="s2", model="broken/echo")
    await client.request("chat.send", session="s2", text="hi")
    await _events_until(client, "run.failed")
    await client.request("sessions.patch", session="s3", model="hang/echo")
    ack = await client.request("chat.send", session="s3", text="hang please")
    run_id = await _run_of(client, ack["messageId"])
    await _events_until(client, "run.running", run_id)
    await client.request("chat.abort", session="s3")
    await _events_until(client, "run.killed", run_id)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        text = (await http.get("/metrics", headers={
            "Authorization": f"Bearer {gateway.token}"})).text
    assert 'clawgate_runs_ended_total{status="done"} 1' in text
    assert 'clawgate_runs_ended_total{status="failed"} 1' in text
    assert 'clawgate_runs_ended_total{status="killed"} 1' in text
    assert 'clawgate_provider_errors_total{kind="auth"} 1' in text
    assert 'kind="stopped"' not in text  # a stop is not a provider error
    assert "clawgate_messages_waiting 0" in text
    assert 'clawgate_messages_accepted_total{channel="ws"} 3' in text
    assert "clawgate_run_duration_seconds_count 3" in text


async def test_metrics_keep_a_bounded_number_of_channel_series(
    gateway: RunningGateway, client: GatewayClient
) -> None:
    invented = [f"made-up-{n}" for n in range(40)]  # a client naming channels as it likes
    for channel in ["webchat", *invented, "ws", "cli"]:
        await client.request("chat.send", session="s1", text="hi", channel=channel)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        text = (await http.get("/metrics", headers={
            "Authorization": f"Bearer {gateway.token}"})).text

    series = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line.startswith("clawgate_messages_accepted_total{"))
    counts = {key.split('"')[1]: int(n) for key, n in series.items()}
    assert counts == {"webchat": 1, "ws": 1, "cli": 1, "other": 40 - OTHER_CHANNELS,
                      **{channel: 1 for channel in invented[:OTHER_CHANNELS]}}


async def _connections(gateway: RunningGateway) -> int:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        text = (await http.get("/metrics", headers={
            "Authorization": f"Bearer {gateway.token}"})).text
    [line] = [ln for ln in text.splitlines() if ln.startswith("clawgate_websocket_connections ")]
    return int(line.split()[1])


async def test_metrics_count_the_websocket_clients_connected(
    gateway: RunningGateway, client: GatewayClient
) -> None:
    assert await _connections(gateway) == 1
    async with await GatewayClient.connect(gateway.url, gateway.token) as second:
        await second.request("status")
        assert await _connections(gateway) == 2
    for _ in range(200):  # the gateway notices the close a moment later (bounded)
        if await _connections(gateway) == 1:
            break
        await asyncio.sleep(0.01)
    assert await _connections(gateway) == 1


async def test_shutdown_ends_a_hanging_run_interrupted_and_records_it(
    gateway: RunningGateway, client: GatewayClient
) -> None:
    await client.request("sessions.patch", session="s1", model="hang/echo")
    ack = await client.request("chat.send", session="s1", text="hang")
    run_id = await _run_of(client, ack["messageId"])
    await _events_until(client, "run.running", run_id)
    store = gateway.runtime.store

    gateway.stop()
    with pytest.raises(GatewayError) as refused:  # the grace period: no new messages
        await client.request("chat.send", session="s2", text="too late")
    ended = await _events_until(client, "run.interrupted", run_id)  # told, then closed
    await asyncio.wait_for(asyncio.shield(gateway.serving), 10)

    assert refused.value.code == "shutting_down"
    assert "shut down" in (ended[-1]["payload"]["error"] or "")
    run = await store.get_run(run_id)
    assert run is not None
    assert run.status == "interrupted"
    assert await store.get_session("s2") is None


async def test_shutdown_lets_a_quick_run_finish_and_keeps_waiting_messages_for_the_restart(
    home: Path, gateway: RunningGateway, client: GatewayClient
) -> None:
    await client.request("sessions.patch", session="quick", model="slow/echo")
    await client.request("sessions.patch", session="long", model="trickle/echo")
    quick = await client.request("chat.send", session="quick", text="almost done")
    await client.request("chat.send", session="long", text=" ".join(["word"] * 30))
    waiting = await client.request("chat.send", session="long", text="after that")
    quick_run = await _run_of(client, quick["messageId"])
    store = gateway.runtime.store

    gateway.stop()  # grace 1 s: the quick run (300 ms) ends, the long one (3.6 s) cannot
    await _events_until(client, "run.done", quick_run)  # connected clients are told
    await _events_until(client, "run.interrupted")
    await asyncio.wait_for(asyncio.shield(gateway.serving), 10)

    finished = await store.get_run(quick_run)
    assert finished is not None
    assert finished.status == "done"
    async with _restarted(home) as again, await GatewayClient.connect(
            again.url, again.token) as fresh:
        for _ in range(100):  # bounded: 5 s
            session = await fresh.request("sessions.get", session="long")
            if session["status"] == "done":
                break
            await asyncio.sleep(0.05)
        history = await fresh.request("chat.history", session="long")
    assert [r["status"] for r in session["runs"]] == ["interrupted", "done"]
    assert {m["id"]: m["fate"] for m in session["inbound"]}[waiting["messageId"]] == "answered"
    assert ("assistant", "echo: after that") in [
        (e["role"], e["text"]) for e in history["entries"]]


async def test_a_message_waiting_behind_a_reply_that_finishes_during_shutdown_is_kept(
    home: Path, gateway: RunningGateway, client: GatewayClient
) -> None:
    """The reply in progress finishes within the grace period; the message waiting its
    turn behind it is not started then (to be cut short), but kept and answered, once,
    by the next gateway."""
    await client.request("sessions.patch", session="w", model="slow/echo")
    first = await client.request("chat.send", session="w", text="m1")
    first_run = await _run_of(client, first["messageId"])
    await _events_until(client, "run.running", first_run)
    waiting = await client.request("chat.send", session="w", text="m2")
    store = gateway.runtime.store

    gateway.stop()  # grace 1 s: m1's reply (300 ms) finishes, and m2's would have too
    await _events_until(client, "run.done", first_run)
    await asyncio.wait_for(asyncio.shield(gateway.serving), 10)

    kept = await store.get_message(waiting["messageId"])
    assert kept is not None
    assert (kept.fate, kept.run_id) == ("pending", None)
    async with _restarted(home) as again, await GatewayClient.connect(
            again.url, again.token) as fresh:
        for _ in range(100):  # bounded: 5 s
            session = await fresh.request("sessions.get", session="w")
            if session["waiting"] == 0 and session["status"] == "done":
                break
            await asyncio.sleep(0.05)
        history = await fresh.request("chat.history", session="w")
    assert [r["status"] for r in session["runs"]] == ["done", "done"]
    assert {m["id"]: m["fate"] for m in session["inbound"]}[waiting["messageId"]] == "answered"
    replies = [e["text"] for e in history["entries"] if e["role"] == "assistant"]
    assert replies == ["echo: m1", "echo: m2"]


async def test_every_connection_is_told_when_the_gateway_begins_to_shut_down(
    gateway: RunningGateway, client: GatewayClient
) -> None:
    """A connection-level event, whatever the connection follows (no seq: resuming after a
    seq is unchanged), also sent to a client that connects during the grace period."""
    await client.request("sessions.patch", session="s1", model="hang/echo")
    ack = await client.request("chat.send", session="s1", text="hang")
    run_id = await _run_of(client, ack["messageId"])
    await _events_until(client, "run.running", run_id)
    async with await GatewayClient.connect(gateway.url, gateway.token) as idle:
        gateway.stop()  # grace 1 s: the hanging run keeps the gateway up meanwhile
        told = await _events_until(client, "gateway.shutdown")
        also = await _events_until(idle, "gateway.shutdown")
        async with await GatewayClient.connect(gateway.url, gateway.token) as late:
            late_told = await _events_until(late, "gateway.shutdown")
        ended = await _events_until(client, "run.interrupted", run_id)
    await asyncio.wait_for(asyncio.shield(gateway.serving), 10)

    for frame in (told[-1], also[-1], late_told[-1]):  # the grace left (of 1 s)
        assert frame["seq"] is None
        assert 0 <= frame["payload"]["graceSeconds"] <= 1
    assert ended[-1]["seq"] is not None  # the stored events go on as before
