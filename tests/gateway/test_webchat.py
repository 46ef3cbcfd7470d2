"""The web chat page in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, WebSocketRoute, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway
from tests.gateway.conftest import restarted
from tests.gateway.webpage import answered, open_session, send, user_messages


async def test_send_watch_the_reply_stream_stop_a_hang_and_reload(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "web")
    status = page.locator("[data-testid=session-status]")
    await client.request("sessions.patch", session="web", model="trickle/echo")

    await send(page, "one two three four five")
    streaming = page.locator("[data-testid=streaming]")
    await expect(streaming).to_contain_text("echo: one", timeout=5000)
    assert "five" not in (await streaming.text_content() or "")  # mid-stream, not all at once
    transcript = page.locator("[data-testid=transcript]")
    await expect(transcript).to_contain_text("echo: one two three four five", timeout=5000)
    await expect(status).to_have_text("done")

    await client.request("sessions.patch", session="web", model="hang/echo")
    await send(page, "please hang")
    await expect(status).to_have_text("running", timeout=5000)
    started = time.monotonic()
    await page.click("[data-testid=stop]")
    await expect(status).to_have_text("killed", timeout=1000)
    assert time.monotonic() - started < 1.0

    await page.reload()
    await expect(page.locator("#session-key")).to_have_text("web")
    await expect(status).to_have_text("killed")
    await expect(transcript).to_contain_text("echo: one two three four five")
    await expect(transcript).to_contain_text("please hang")
    queue = page.locator("[data-testid=queue]")
    await expect(queue).to_contain_text("answered")
    session_list = page.locator("[data-testid=session-list]")
    await expect(session_list).to_contain_text("killed")


async def test_a_wrong_token_asks_for_the_right_one(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/#token=not-the-token")
    await expect(page.locator("#login-error")).to_have_text("That token was refused.")
    await page.fill("#token-input", str(gateway.token))
    await page.click("#login-form button")
    await expect(page.locator("#connection")).to_have_attribute("title", "connected")


async def test_a_message_sent_elsewhere_shows_up_live(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "shared")
    await client.request("chat.send", session="shared", text="from another client")
    transcript = page.locator("[data-testid=transcript]")
    await expect(transcript).to_contain_text("echo: from another client", timeout=5000)
    await expect(page.locator("[data-testid=session-status]")).to_have_text("done")


async def test_the_newest_reply_stays_in_view_as_the_conversation_grows(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "long")
    await page.set_viewport_size({"width": 900, "height": 500})
    transcript = page.locator("[data-testid=transcript]")
    for n in range(8):
        await send(page, f"message number {n}")
        await expect(transcript).to_contain_text(f"echo: message number {n}", timeout=5000)
    await expect(page.locator("[data-testid=queue]")).to_contain_text("message number 7")
    newest = transcript.get_by_text("echo: message number 7", exact=True)
    await expect(newest).to_be_in_viewport()


async def _in_use(page: Page, session: str) -> None:
    """The page shows ``session``, remembers it, and a message sent there is answered."""
    await expect(page.locator("#session-key")).to_have_text(session)
    assert await page.evaluate("localStorage.getItem('clawgate.session')") == session
    await send(page, f"still working in {session}")
    await answered(page, f"still working in {session}")


async def test_a_refused_message_keeps_its_text_and_says_why(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "long-text")
    box = page.locator("[data-testid=message-input]")
    await send(page, "y" * 40_000)
    await expect(page.locator("#notice")).to_contain_text("the limit is 32000")
    assert await box.input_value() == "y" * 40_000, "the refused text was lost"

    await send(page, "a shorter one")
    await answered(page, "a shorter one")
    await expect(box).to_have_value("")


async def test_a_message_sent_during_a_reply_says_what_becomes_of_it(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "busy")
    await client.request("sessions.patch", session="busy", model="hang/echo",
                         queue={"mode": "followup"})
    await send(page, "take your time")
    await expect(page.locator("[data-testid=session-status]")).to_have_text(
        "running", timeout=5000)
    await send(page, "and then this")
    await expect(page.locator("#notice")).to_have_text(  # the reply hangs: nothing else
        "queued: answered on its own after the current reply")  # comes to replace it
    await page.click("[data-testid=stop]")


async def test_a_message_sent_while_the_gateway_is_down_is_kept_then_sent_once(
    browser: Browser, home: Path
) -> None:
    async with restarted(home) as gateway:
        page = await open_session(browser, gateway, "offline")
    port = urlsplit(gateway.url).port
    assert port is not None
    box = page.locator("[data-testid=message-input]")
    await expect(page.locator("#connection")).to_have_attribute("title", "reconnecting")
    await send(page, "typed while the gateway is down")
    await expect(page.locator("#notice")).to_contain_text("not connected")
    await expect(box).to_have_value("typed while the gateway is down")

    async with restarted(home, port) as gateway:
        await answered(page, "typed while the gateway is down", within_ms=15_000)
        await expect(box).to_have_value("")
        assert await user_messages(gateway, "offline") == ["typed while the gateway is down"]


async def test_the_page_says_at_once_that_the_gateway_is_shutting_down(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "web")
    await client.request("sessions.patch", session="other", model="hang/echo")
    await client.request("chat.send", session="other", text="hang")  # keeps the grace busy
    await expect(page.locator("[data-testid=session-list]")).to_contain_text("other")

    gateway.stop()

    await expect(page.locator("#notice")).to_contain_text(
        "the gateway is shutting down: replies in progress may finish for ")


async def test_a_message_whose_acknowledgement_was_lost_is_not_sent_twice(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "lossy")
    sent: list[dict[str, object]] = []

    async def lose_the_first_acknowledgement(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["method"] == "chat.send":
                sent.append(frame)
            server.send(message)

        async def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if len(sent) == 1 and frame.get("id") == sent[0]["id"]:
                await route.close(code=1006, reason="the network failed")
                return
            route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    await page.route_web_socket(re.compile(r"/ws\?"), lose_the_first_acknowledgement)
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("title", "connected")
    await send(page, "only once please")
    await answered(page, "only once please", within_ms=15_000)
    await expect(page.locator("[data-testid=message-input]")).to_have_value("")
    assert len(sent) == 2
    keys = {frame["params"]["idempotencyKey"] for frame in sent}  # type: ignore[index]
    assert len(keys) == 1
    assert await user_messages(gateway, "lossy") == ["only once please"]


async def test_an_invalid_session_name_is_refused_and_not_kept(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "web")
    name = page.locator("#new-session-key")
    await name.fill("my notes")
    assert await name.evaluate("input => input.validity.patternMismatch")
    await page.click("#new-session button")
    await expect(page.locator("#notice")).to_contain_text('"my notes" is not a session name')
    await _in_use(page, "web")

    await name.fill("team/a.b_c:d@e+f-1")  # every character the gateway allows
    await page.click("#new-session button")
    await expect(page.locator("#session-key")).to_have_text("team/a.b_c:d@e+f-1")
    await page.reload()
    await expect(page.locator("#session-key")).to_have_text("team/a.b_c:d@e+f-1")


async def test_a_refused_session_remembered_by_an_older_page_falls_back_to_main(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "web")
    await page.evaluate("localStorage.setItem('clawgate.session', 'my notes')")
    await page.reload()
    await expect(page.locator("#notice")).to_contain_text('session "my notes" was refused')
    await _in_use(page, "main")
