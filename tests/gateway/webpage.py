"""Driving the web chat page in a real headless Chromium (Debian's package, through
Playwright): the browser, and what a user does on the page."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium; the test is skipped loudly without it (and fails under CI)."""
    if not HAVE_CHROMIUM:
        message = (f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
                   "when it runs as root; install it to run the web chat tests")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip("SKIPPED LOUDLY: " + message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        await browser.close()


async def open_session(browser: Browser, gateway: RunningGateway, session: str) -> Page:
    """A new tab on the page (through the link the gateway prints), showing ``session``."""
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/#token={gateway.token}")
    await expect(page.locator("#connection")).to_have_attribute("title", "connected")
    await show(page, session)
    return page


async def show(page: Page, session: str) -> None:
    """Open ``session`` by name, as a user types it in the sidebar."""
    await page.fill("#new-session-key", session)
    await page.click("#new-session button")
    await expect(page.locator("#session-key")).to_have_text(session)


async def send(page: Page, text: str) -> None:
    await page.fill("[data-testid=message-input]", text)
    await page.click("[data-testid=send]")


async def hanging(page: Page, client: GatewayClient, session: str, **queue: object) -> None:
    """``session`` busy with a reply that never comes (until stopped), queue set as given."""
    await client.request("sessions.patch", session=session, model="hang/echo", queue=queue)
    await send(page, "take your time")
    await expect(page.locator("[data-testid=session-status]")).to_have_text(
        "running", timeout=5000)


async def answered(page: Page, text: str, within_ms: float = 5000) -> None:
    await expect(page.locator("[data-testid=transcript]")).to_contain_text(
        f"echo: {text}", timeout=within_ms)


async def user_messages(gateway: RunningGateway, session: str) -> list[str]:
    async with await GatewayClient.connect(gateway.url, gateway.token) as client:
        history = await client.request("chat.history", session=session)
    return [e["text"] for e in history["entries"] if e["role"] == "user"]
