"""The web chat page as a daily user meets it: long text, narrow screens, typing methods,
scrolling back, and what the page says about each message and run."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, expect

from clawgate.gateway.client import GatewayClient
from clawgate.gateway.server import RunningGateway
from tests.gateway.conftest import restarted
from tests.gateway.webpage import answered, hanging, open_session, send, show, user_messages


async def _overflows_sideways(page: Page) -> list[str]:
    """The parts of the page whose content is wider than they are (they scroll sideways)."""
    found: list[str] = await page.evaluate("""() => {
        const wide = (e) => e.scrollWidth > e.clientWidth + 1;
        const parts = [document.documentElement, ...document.querySelectorAll(
            "#transcript, #transcript .entry, #queue-list, #notice")];
        return parts.filter(wide).map((e) => e.id || e.className || e.tagName);
    }""")
    return found


async def test_long_unbroken_text_wraps_inside_its_bubble(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "long-words")
    await page.set_viewport_size({"width": 900, "height": 700})
    word = "A" * 3000
    url = "https://example.com/" + "/".join(f"segment-{n}" for n in range(150))
    await send(page, word)
    await answered(page, word)
    await send(page, url)
    await answered(page, url)
    assert await _overflows_sideways(page) == []


async def test_a_multi_line_command_reply_keeps_its_lines(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "help")
    await send(page, "/help")
    notice = page.locator("#notice")
    await expect(notice).to_contain_text("/status")
    assert "\n" in (await notice.inner_text()).strip()


async def test_enter_that_ends_an_input_method_composition_does_not_send(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "ime")
    box = page.locator("[data-testid=message-input]")
    await box.fill("にほん")
    for composing in ("isComposing: true, keyCode: 229", "keyCode: 229"):  # Chrome, Safari
        await box.evaluate(f"""box => box.dispatchEvent(new KeyboardEvent("keydown",
            {{key: "Enter", {composing}, bubbles: true, cancelable: true}}))""")
    await box.fill("にほんご")
    await box.press("Enter")
    await answered(page, "にほんご")
    assert await user_messages(gateway, "ime") == ["にほんご"]


async def test_a_message_is_sent_as_typed_with_its_indentation(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await open_session(browser, gateway, "code")
    await send(page, "  \n \t ")  # only blanks: nothing to send
    await expect(page.locator("[data-testid=message-input]")).to_have_value("  \n \t ")
    code = "    def f():\n        return 1"
    await send(page, code + "\n\n")
    await answered(page, "def f():")
    assert await user_messages(gateway, "code") == [code]


async def test_a_reader_who_scrolled_back_stays_where_they_are_when_a_reply_ends(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "reading")
    await page.set_viewport_size({"width": 900, "height": 500})
    for n in range(8):
        await send(page, f"message number {n}\nwith\nseveral\nlines")
        await answered(page, f"message number {n}")
    transcript = page.locator("[data-testid=transcript]")
    await expect(page.locator("[data-testid=streaming]")).to_have_count(0)  # all shown
    await expect(page.locator("[data-testid=session-status]")).to_have_text("done")
    await transcript.evaluate(  # the reader scrolls up, and the page has seen it
        "t => new Promise(seen => {"
        " t.addEventListener('scroll', () => seen(null), {once: true}); t.scrollTop = 0; })")
    assert await transcript.evaluate("t => t.scrollTop") == 0
    await client.request("chat.send", session="reading", text="from another client")
    await answered(page, "from another client")
    await expect(page.locator("[data-testid=streaming]")).to_have_count(0)  # read again
    await expect(page.locator("[data-testid=session-status]")).to_have_text("done")
    assert await transcript.evaluate("t => t.scrollTop") == 0
    await expect(transcript.locator(".entry").first).to_be_in_viewport()


async def test_a_message_the_full_queue_dropped_is_said_to_be_dropped(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "capped")
    await hanging(page, client, "capped", mode="collect", cap=1, drop="new")
    notice = page.locator("#notice")
    await send(page, "second waits")
    await expect(notice).to_contain_text("queued: answered together")
    await send(page, "third is dropped")
    await expect(notice).to_contain_text("dropped: the queue was full")
    await expect(notice).not_to_contain_text("queued")
    await expect(page.locator("[data-testid=message-input]")).to_have_value("third is dropped")

    await client.request("sessions.patch", session="capped", queue={"drop": "old"})
    await send(page, "fourth pushes out the second")
    await expect(notice).to_contain_text('"second waits" dropped: the queue was full')
    await expect(notice).to_contain_text("queued: answered together")
    await page.click("[data-testid=stop]")


async def test_a_reply_shows_whole_after_a_reload_or_a_switch_mid_reply(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "partial")
    await client.request("sessions.patch", session="partial", model="trickle/echo")
    await send(page, " ".join(f"w{n}" for n in range(80)))  # a word every 120 ms
    streaming = page.locator("[data-testid=streaming]")
    await expect(streaming).to_contain_text("echo: w0 w1 w2 w3", timeout=5000)
    from_start = "echo: w0 w1 w2 w3 w4 w5"

    await page.reload()
    await expect(streaming).to_contain_text(from_start)
    other = await open_session(browser, gateway, "partial")  # another tab, opened now
    await expect(other.locator("[data-testid=streaming]")).to_contain_text(from_start)
    await show(page, "elsewhere")
    await page.click("#session-list li[data-session=partial]")
    await expect(streaming).to_contain_text(from_start)
    await expect(streaming).to_contain_text("w12")  # and it goes on
    assert (await streaming.text_content() or "").count("w5 ") == 1
    await page.click("[data-testid=stop]")


async def test_the_question_shows_as_soon_as_its_reply_starts_in_every_tab(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "asking")
    other = await open_session(browser, gateway, "asking")
    await hanging(page, client, "asking", mode="followup")  # sends "take your time"
    for tab in (page, other):
        transcript = tab.locator("[data-testid=transcript]")
        await expect(transcript.locator(".entry.user")).to_have_text(["take your time"])
        await expect(tab.locator("[data-testid=reply-pending]")).to_be_visible()
    await page.click("[data-testid=stop]")
    await client.request("sessions.patch", session="asking", model="trickle/echo")
    await client.request("chat.send", session="asking", text="from a third client")
    for tab in (page, other):
        await expect(tab.locator("[data-testid=streaming]")).to_contain_text("echo:")
        await expect(tab.locator(".entry.user").last).to_have_text("from a third client")


async def test_stop_says_what_it_did_and_the_queue_says_it_in_words(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "stopping")
    await hanging(page, client, "stopping", mode="followup")
    await send(page, "second waits")
    queue = page.locator("[data-testid=queue]")
    await expect(queue).to_contain_text("second waits")
    await page.click("[data-testid=stop]")
    await expect(page.locator("[data-testid=session-status]")).to_have_text("killed")
    await expect(page.locator("[data-testid=run-error]")).to_have_text("stopped by request")
    notice = page.locator("#notice")  # the run's end did not replace what Stop said
    await expect(notice).to_contain_text("stopped run")
    await expect(notice).to_contain_text("dropped 1 waiting message")
    await expect(queue.locator("li", has_text="take your time")).to_contain_text(
        "answered (run killed)")
    await expect(queue.locator("li", has_text="second waits")).to_contain_text(
        "dropped: cleared by stop")

    await client.request("sessions.patch", session="stopping", queue={"cap": 1, "drop": "new"})
    await hanging(page, client, "stopping")
    await send(page, "waits its turn")
    await send(page, "one too many")
    await expect(queue.locator("li", has_text="one too many")).to_contain_text(
        "dropped: the queue was full (the newest message is dropped)")
    await expect(queue).not_to_contain_text("queue_full")
    await page.click("[data-testid=stop]")


async def test_a_failed_run_says_why_after_a_reload_and_notices_stay_with_their_session(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "failing")
    await client.request("sessions.patch", session="failing", model="broken/echo")
    await send(page, "this will fail")
    status = page.locator("[data-testid=session-status]")
    await expect(status).to_have_text("failed", timeout=20_000)
    failed = await client.request("sessions.get", session="failing")
    error = failed["runs"][0]["error"]
    assert error
    await page.reload()
    await expect(status).to_have_text("failed")
    await expect(page.locator("[data-testid=run-error]")).to_have_text(error)

    await send(page, "/help")
    await expect(page.locator("#notice")).to_contain_text("/status")
    await show(page, "elsewhere")
    await expect(page.locator("#notice")).to_have_text("")
    await expect(page.locator("[data-testid=run-error]")).to_have_text("")


async def test_a_token_changed_while_the_page_is_open_brings_back_the_login(
    browser: Browser, home: Path
) -> None:
    async with restarted(home) as gateway:
        page = await open_session(browser, gateway, "rotated")
    port = urlsplit(gateway.url).port
    assert port is not None
    box = page.locator("[data-testid=message-input]")
    await box.fill("half a thought")
    (home / "gateway.token").write_text("a-new-token\n")
    async with restarted(home, port) as again:
        assert again.token == "a-new-token"
        await expect(page.locator("#login-error")).to_have_text("That token was refused.",
                                                                timeout=15_000)
        await page.fill("#token-input", "a-new-token")
        await page.click("#login-form button")
        await expect(page.locator("#connection")).to_have_attribute("title", "connected")
        await expect(page.locator("#session-key")).to_have_text("rotated")
        await expect(box).to_have_value("half a thought")


async def test_a_gateway_unreachable_at_first_is_said_and_tried_again(
    browser: Browser, gateway: RunningGateway
) -> None:
    page = await browser.new_page()
    await page.route("**/v1/models", lambda route: route.abort())
    await page.goto(f"{gateway.url}/#token={gateway.token}")
    await expect(page.locator("#notice")).to_contain_text("cannot reach the gateway")
    await page.unroute("**/v1/models")
    await expect(page.locator("#connection")).to_have_attribute("title", "connected",
                                                                timeout=15_000)
    await expect(page.locator("#notice")).to_have_text("")


async def test_a_session_deleted_elsewhere_says_so(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    page = await open_session(browser, gateway, "victim")
    await send(page, "before the delete")
    await answered(page, "before the delete")
    await client.request("sessions.reset", session="victim")  # a fresh start: nothing to say
    await expect(page.locator(".entry")).to_have_count(0)
    await expect(page.locator("#notice")).to_have_text("")
    await send(page, "after the reset")
    await answered(page, "after the reset")

    await client.request("sessions.delete", session="victim")
    await expect(page.locator("#notice")).to_contain_text('session "victim" was deleted')
    await expect(page.locator(".entry")).to_have_count(0)
    await expect(page.locator("#session-key")).to_have_text("victim")
    await expect(page.locator("#session-list li[data-session=victim] .badge")).to_have_text(
        "new")


async def test_on_a_phone_the_chat_fits_and_the_sessions_are_a_tap_away(
    browser: Browser, gateway: RunningGateway, client: GatewayClient
) -> None:
    context = await browser.new_context(viewport={"width": 375, "height": 740},
                                        is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(f"{gateway.url}/#token={gateway.token}")
    await expect(page.locator("#connection")).to_have_attribute("title", "connected")
    assert await _beyond_the_screen(page) == []
    await send(page, "hello from a phone, a message long enough to wrap on a narrow screen")
    await answered(page, "hello from a phone")
    assert await _beyond_the_screen(page) == []

    await page.click("#sessions-toggle")
    await show(page, "pocket")
    await expect(page.locator("#session-list")).to_be_hidden()  # the chat is back
    await hanging(page, client, "pocket", mode="followup")
    await page.click("[data-testid=stop]")
    await expect(page.locator("[data-testid=session-status]")).to_have_text("killed")

    await page.click("#sessions-toggle")
    await page.click("#session-list li[data-session=main]")
    await expect(page.locator("#session-key")).to_have_text("main")
    assert await _beyond_the_screen(page) == []
    await context.close()


async def _beyond_the_screen(page: Page) -> list[str]:
    """What a phone shows only in part, or not at all without scrolling sideways: the page
    wider than the screen (a mobile browser then widens its layout), or a control past its
    edge."""
    found: list[str] = await page.evaluate("""() => {
        const screen = visualViewport.width, found = [];
        if (document.documentElement.scrollWidth > screen) found.push("the page");
        for (const id of ["message", "send", "stop", "sessions-toggle"]) {
            const box = document.getElementById(id)?.getBoundingClientRect();
            if (!box || box.left < 0 || box.right > screen) found.push(id);
        }
        return found;
    }""")
    return found


async def test_reply_pieces_in_any_order_make_the_reply_once(
    browser: Browser, gateway: RunningGateway
) -> None:
    """replies.js, in the page: pieces placed by their offsets (in code points, as the
    gateway counts: an emoji is one), with the history's reply so far in between."""
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/")
    made: list[str] = await page.evaluate("""() => {
        const whole = "héllo 🌊 wörld, 🐚 and more";
        const pieces = [[0, "héllo "], [6, "🌊 wö"], [10, "rld, "], [15, "🐚 and"], [20, " more"]];
        const results = [];
        for (const order of [[0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [1, 0, 0, 3, 2, 4, 4]]) {
            const reply = newReply();
            let shown = "";
            for (const n of order) shown += takePiece(reply, ...pieces[n]);
            results.push(shown, reply.text);
        }
        // the history's reply so far (up to character 10) arrives after pieces on both sides
        let reply = newReply();
        takePiece(reply, ...pieces[0]);
        takePiece(reply, ...pieces[3]);  // after a gap
        reply = withPartial(reply, {text: "héllo 🌊 wö", end: 10});
        takePiece(reply, ...pieces[1]);  // already there
        takePiece(reply, ...pieces[2]);
        takePiece(reply, ...pieces[4]);
        results.push(reply.text, String(hasGap(reply)), whole);
        return results;
    }""")
    whole = made.pop()
    assert made == [whole] * 6 + [whole, "false"]
