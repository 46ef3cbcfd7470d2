"""The web chat page while things happen to its session: a /compact under way and the ways
to stop it, messages dropped, settings changed and messages steered in by other clients."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, Page, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway
from tests.gateway.webpage import answered, hanging, open_session, send, show

FULL_OLDEST = "dropped: the queue was full (the oldest waiting message is dropped)"
RESET = "dropped: cleared when the session was reset or deleted"


async def _something_to_compact(page: Page, client: GatewayClient, session: str) -> None:
    """``session`` with turns to summarise, and a model that never summarises them."""
    for text in ("one", "two", "three"):
        await send(page, text)
        await answered(page, text)
    await client.request("sessions.patch", session=session, model="hang/echo")


async def test_a_compact_shows_while_under_way_and_a_stop_typed_pressed_or_from_elsewhere_ends_it(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "squeeze")
    await _something_to_compact(page, client, "squeeze")
    compacting = page.locator("[data-testid=compacting]")
    stop, notice = page.locator("[data-testid=stop]"), page.locator("#notice")
    box = page.locator("[data-testid=message-input]")

    await send(page, "/compact")
    await expect(compacting).to_be_visible()
    await expect(stop).to_be_enabled()
    await show(page, "elsewhere")  # not held up by the /compact
    await expect(compacting).to_be_hidden()
    await expect(stop).to_be_disabled()
    await page.click("#session-list li[data-session=squeeze]")
    await expect(compacting).to_be_visible()
    await send(page, "/stop")  # typed: a stop, answered at once
    await expect(compacting).to_be_hidden()
    await expect(notice).to_contain_text(re.compile("compaction stopped|stopped compacting"))
    await expect(box).to_have_value("")
    await expect(stop).to_be_disabled()

    await send(page, "/compact")
    await expect(compacting).to_be_visible()
    await stop.click()
    await expect(compacting).to_be_hidden()
    await expect(notice).to_contain_text(re.compile("compaction stopped|stopped compacting"))

    await send(page, "/compact")
    await expect(compacting).to_be_visible()
    await client.request("chat.abort", session="squeeze")
    await expect(compacting).to_be_hidden()
    await expect(notice).to_have_text("compaction stopped; any summary it had written is kept")


async def test_a_message_dropped_by_another_client_is_named_and_no_longer_said_to_wait(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "crowded")
    notice = page.locator("#notice")
    await hanging(page, client, "crowded", mode="followup", cap=1, drop="old")
    await send(page, "mine waits")
    await expect(notice).to_have_text("queued: answered on its own after the current reply")

    await client.request("chat.send", session="crowded", text="theirs pushes mine out")
    await expect(notice).to_have_text(f'"mine waits" {FULL_OLDEST}')
    await send(page, "mine pushes theirs out")  # said once, by the acknowledgement
    await expect(notice).to_have_text("queued: answered on its own after the current reply\n"
                                      f'"theirs pushes mine out" {FULL_OLDEST}')

    await client.request("sessions.reset", session="crowded")
    await expect(notice).to_contain_text(f'"mine pushes theirs out" {RESET}')
    await expect(notice).not_to_contain_text("queued")
    await expect(page.locator(".entry")).to_have_count(0)


async def test_new_typed_in_the_page_names_the_waiting_messages_it_dropped(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "renewed")
    await hanging(page, client, "renewed", mode="followup")
    await send(page, "a long question that waits its turn " + "and goes on " * 10)
    await send(page, "/new")
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("dropped 1 waiting message")
    await expect(notice).to_contain_text(
        f'"a long question that waits its turn and goes on and goes on…" {RESET}')


async def test_a_message_its_http_sender_withdrew_is_not_said_to_be_cleared_by_stop_alone(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "withdrawn")
    await hanging(page, client, "withdrawn", mode="followup")
    from_http = page.locator("[data-testid=queue] li", has_text="from http")
    async with httpx.AsyncClient(base_url=gateway.url) as http, http.stream(
            "POST", "/v1/chat/completions", json={
                "model": "clawgate", "stream": True,
                "messages": [{"role": "user", "content": "from http"}]},
            headers={"Authorization": f"Bearer {gateway.token}",
                     "X-Clawgate-Session": "withdrawn"}) as streaming:
        assert streaming.status_code == 200
        await expect(from_http).to_contain_text("pending")
    # the client left while its message waited its turn: nobody pressed Stop
    why = "dropped: cleared by stop, or withdrawn when its sender left"
    await expect(from_http).to_contain_text(why)
    await expect(page.locator("#notice")).to_contain_text(f'"from http" {why}')
    await page.click("[data-testid=stop]")


async def test_a_model_or_queue_mode_changed_elsewhere_shows_in_the_header(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "tuned")
    await send(page, "hello")
    await answered(page, "hello")
    model = page.locator("[data-testid=session-model]")
    mode = page.locator("[data-testid=session-queue]")
    await expect(model).to_have_text("echo/echo")
    await expect(mode).to_have_text("queue: followup")

    await client.request("sessions.patch", session="tuned", model="slow/echo")
    await expect(model).to_have_text("slow/echo")
    await client.request("sessions.patch", session="tuned", queue={"mode": "STEER"})
    await expect(mode).to_have_text("queue: steer")
    await send(page, "/queue collect")
    await expect(mode).to_have_text("queue: collect")
    await page.reload()
    await expect(model).to_have_text("slow/echo")
    await expect(mode).to_have_text("queue: collect")


async def test_a_steered_message_shows_once_folded_in_and_its_reply_after_it(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "steered")
    await client.request("sessions.patch", session="steered", model="trickle/echo",
                         queue={"mode": "steer"})
    first = " ".join(f"w{n}" for n in range(20))  # a word every 120 ms
    await send(page, first)
    await expect(page.locator("[data-testid=streaming]")).to_contain_text("echo: w0")
    steer = "steer " + " ".join(f"s{n}" for n in range(40))
    await send(page, steer)

    entries = page.locator("[data-testid=transcript] .entry")
    await expect(entries.nth(3)).to_contain_text("echo: steer s0")  # while it is written
    await expect(entries.nth(3)).to_have_attribute("data-testid", "streaming")
    await expect(entries).to_have_text([first, f"echo: {first}", steer, re.compile("^echo: steer")])
    await expect(page.locator("[data-testid=session-status]")).to_have_text("done",
                                                                             timeout=15_000)
    await expect(entries).to_have_text([first, f"echo: {first}", steer, f"echo: {steer}"])
