"""The web chat page while things happen to its session: a /compact under way and the ways
to stop it, messages dropped, settings changed and messages steered in by other clients."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway
from tests.gateway.webpage import answered, open_session, send, show


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
