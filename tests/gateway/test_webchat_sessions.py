"""The web chat page's session list with many sessions: all of them reachable, and a burst
of new ones read in a few requests, not one per event."""

from __future__ import annotations

import json
import re

from playwright.async_api import Browser, WebSocketRoute, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway
from tests.gateway.webpage import answered, send, show

BURST = 205  # more than the 200 the list shows at first


class ListRequests:
    """Between the page and the gateway: counts the page's sessions.list requests and the
    session.created events it is sent, and holds back the answers to the list requests
    while ``holding``."""

    def __init__(self) -> None:
        self.lists: list[object] = []  # request ids
        self.created = 0
        self.holding = False
        self.held: list[str | bytes] = []
        self._route: WebSocketRoute | None = None

    def attach(self, route: WebSocketRoute) -> None:
        self._route = route
        server = route.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("method") == "sessions.list":
                self.lists.append(frame["id"])
            server.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            self.created += frame.get("event") == "session.created"
            if self.holding and frame.get("type") == "res" and frame["id"] in self.lists:
                self.held.append(message)
                return
            route.send(message)

        route.on_message(from_page)
        server.on_message(from_server)

    def release(self) -> None:
        assert self._route is not None
        self.holding = False
        for message in self.held:
            self._route.send(message)
        self.held.clear()


async def test_a_burst_of_sessions_is_listed_in_a_few_reads_and_every_one_is_reachable(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    wire = ListRequests()
    page = await browser.new_page()
    await page.route_web_socket(re.compile(r"/ws\?"), wire.attach)
    await page.goto(f"{gateway.url}/#token={gateway.token}")
    await expect(page.locator("#connection")).to_have_attribute("title", "connected")
    await show(page, "oldest")
    await send(page, "the first session of all")
    await answered(page, "the first session of all")
    await show(page, "watching")

    before = len(wire.lists)
    wire.holding = True  # the page's first list request of the burst is not answered yet
    for n in range(BURST):
        await client.request("chat.send", session=f"bulk-{n:03d}", text=f"hi {n}")
    for _ in range(200):  # bounded: until the page was sent every session.created
        if wire.created >= BURST:
            break
        await page.wait_for_timeout(50)
    wire.release()
    more = page.locator("[data-testid=session-more]")
    await expect(more).to_contain_text(f"showing 200 of {BURST + 1}")
    assert len(wire.lists) - before <= 2  # one read under way, one more for what came since

    sessions = page.locator("[data-testid=session-list]")
    await expect(sessions.locator("li[data-session=oldest]")).to_have_count(0)
    await show(page, "oldest")  # opened by name: its status, not "new"
    await expect(sessions.locator("li[data-session=oldest] .badge")).to_have_text("done")
    await show(page, "watching")
    await more.get_by_role("button", name="show more").click()
    await expect(sessions.locator("li[data-session=oldest] .badge")).to_have_text("done")
    await expect(more).to_be_hidden()
