"""The page's conversation WebSocket: Stop over it (HTTP when it is down), a second tab following
a new answer live, typing shown in the other tabs, reconnecting after a drop."""

import re

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.helpers import answer, answer_text, norm, send, wait_status, wait_words, words

WS = re.compile(r"/ws/conversations/\d+/$")


@pytest.fixture
def open_chat(context, live):
    """Open more tabs of alice's chat page on a path; JavaScript errors in any of them fail the test."""
    errors: list[str] = []

    def open_tab(path: str = "/") -> Page:
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(f"{live.base_url}{path}")
        expect(tab.locator("html")).to_have_attribute("data-ready", "true")
        return tab

    yield open_tab
    assert not errors, f"JavaScript errors on the page: {errors}"


def conversation_of(page: Page) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def wait_socket(page: Page, is_open: bool = True) -> None:
    page.wait_for_function("want => !!(window.__chatSocket && window.__chatSocket.isOpen()) === want", arg=is_open)


def watch_cancels(page: Page) -> list[str]:
    """URLs of HTTP cancel requests the page makes."""
    cancels: list[str] = []
    page.on("request", lambda request: "/cancel/" in request.url and cancels.append(request.url))
    return cancels


def watch_frames_sent(page: Page) -> list[str]:
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))
    return frames


def assert_stored_equals_shown(page: Page, alice, status: str) -> None:
    stored = alice.answer(conversation_of(page))
    assert stored["status"] == status
    assert norm(stored["content"]) == norm(answer_text(page)), "the screen ends exactly as the stored answer"


# --- Stop ----------------------------------------------------------------------------------------


def test_stop_goes_over_the_websocket(page, upstream, alice):
    cancels = watch_cancels(page)
    frames = watch_frames_sent(page)
    upstream.push(tokens=words(400), rate=25)
    send(page, "Write a lot")
    wait_socket(page)
    wait_words(page, 5)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("stop")).to_be_hidden()
    page.get_by_test_id("composer").fill("next")
    expect(page.get_by_test_id("send")).to_be_enabled()  # the composer is free at once
    wait_status(page, "cancelled")
    record = upstream.last()
    upstream.wait_for(lambda: record.client_closed_at, what="the upstream connection to close")
    assert cancels == [], "Stop went over HTTP although the socket was open"
    message_id = int(answer(page).get_attribute("data-message-id"))
    assert [f for f in frames if '"cancel"' in f] == [f'{{"type":"cancel","message_id":{message_id}}}']
    assert 5 <= len(norm(answer_text(page)).split()) < 400
    assert_stored_equals_shown(page, alice, "cancelled")


def test_a_message_sent_right_after_stop_waits_for_the_stopped_answer(page, upstream, alice):
    upstream.push(tokens=words(400), rate=25)
    upstream.push(tokens=words(5), rate=50)
    send(page, "Write a lot")
    wait_socket(page)
    wait_words(page, 3)
    page.get_by_test_id("stop").click()
    send(page, "And now this")  # at once: the server takes it once the first answer is stored
    expect(page.locator("[data-testid=message][data-role=assistant]")).to_have_count(2)
    wait_status(page, "complete")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert norm(answer_text(page)) == norm("".join(words(5)))
    first = page.locator("[data-testid=message][data-role=assistant]").first
    expect(first).to_have_attribute("data-status", "cancelled")
    messages = alice.conversation(conversation_of(page))["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "cancelled"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert norm(messages[1]["content"]) == norm(first.get_by_test_id("message-text").inner_text())


def test_stop_uses_http_when_the_socket_is_down(page, upstream, alice):
    connections: list[str] = []

    def refuse(ws: WebSocketRoute) -> None:
        connections.append(ws.url)
        ws.close()  # never opens, as when the server or the network is down

    page.route_web_socket(WS, refuse)
    cancels = watch_cancels(page)
    upstream.push(tokens=words(400), rate=25)
    send(page, "Write a lot")
    wait_words(page, 5)
    assert connections, "the page tried to connect"
    assert page.evaluate("window.__chatSocket.isOpen()") is False
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    assert len(cancels) == 1
    assert_stored_equals_shown(page, alice, "cancelled")
    # The page keeps trying, with backoff: a few attempts, not a storm.
    assert 1 <= len(connections) <= 8, connections


def test_stop_falls_back_to_http_when_the_socket_stays_silent(page, upstream, alice):
    """An open socket whose cancel goes nowhere: after ~3 s without `done`, HTTP cancel."""
    page.route_web_socket(WS, lambda ws: None)  # "open", but nothing reaches the server
    cancels = watch_cancels(page)
    upstream.push(tokens=words(400), rate=25)
    send(page, "Write a lot")
    wait_socket(page)
    wait_words(page, 5)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("stop")).to_be_hidden()
    page.wait_for_timeout(1500)
    assert cancels == [], "waits for the stream's `done` first"
    wait_status(page, "cancelled", timeout=10_000)
    assert len(cancels) == 1
    assert_stored_equals_shown(page, alice, "cancelled")


# --- a second tab --------------------------------------------------------------------------------

LIVE_IN_B = """() => {
    const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
    const el = all[all.length - 1];
    if (!el) return false;
    const n = el.querySelector('[data-testid=message-text]').textContent.split(/\\s+/).filter(Boolean).length;
    return n >= 3 && el.dataset.status === 'streaming';
}"""


def test_a_second_tab_follows_a_new_answer_live(open_chat, upstream, alice):
    conversation_id = alice.new_conversation()
    tab_a = open_chat(f"/c/{conversation_id}/")
    tab_b = open_chat(f"/c/{conversation_id}/")
    wait_socket(tab_a)
    wait_socket(tab_b)
    a_attaches = []
    tab_a.on("request", lambda request: "/stream/" in request.url and a_attaches.append(request.url))
    upstream.push(tokens=words(40), rate=20)  # 2 s of answer
    send(tab_a, "Hello from tab A")
    users_b = tab_b.locator("[data-testid=message][data-role=user]")
    expect(users_b).to_have_count(1)
    expect(users_b.get_by_test_id("message-text")).to_have_text("Hello from tab A")
    tab_b.wait_for_function(LIVE_IN_B)  # tokens show in B while the answer is still being written
    expect(tab_b.get_by_test_id("stop")).to_be_visible()
    wait_status(tab_a, "complete")
    wait_status(tab_b, "complete")
    expected = norm("".join(words(40)))
    assert norm(answer_text(tab_a)) == expected
    assert norm(answer_text(tab_b)) == expected
    assert norm(alice.answer(conversation_id)["content"]) == expected
    for tab in (tab_a, tab_b):
        expect(tab.locator("[data-testid=message][data-role=assistant]")).to_have_count(1)
        expect(tab.get_by_test_id("stop")).to_be_hidden()
    assert a_attaches == [], "tab A follows its own answer on its POST; it never attached a second time"


def test_a_second_tab_sees_an_answer_stopped_elsewhere(open_chat, upstream, alice):
    conversation_id = alice.new_conversation()
    tab_a = open_chat(f"/c/{conversation_id}/")
    tab_b = open_chat(f"/c/{conversation_id}/")
    wait_socket(tab_a)
    wait_socket(tab_b)
    upstream.push(tokens=words(400), rate=25)
    send(tab_a, "Long")
    tab_b.wait_for_function(LIVE_IN_B)
    tab_b.get_by_test_id("stop").click()  # Stop in B, over B's socket
    wait_status(tab_a, "cancelled")
    wait_status(tab_b, "cancelled")
    stored = alice.answer(conversation_id)
    assert norm(stored["content"]) == norm(answer_text(tab_a)) == norm(answer_text(tab_b))


# --- typing --------------------------------------------------------------------------------------


def test_typing_in_one_tab_shows_in_the_other(open_chat, upstream, alice, artifacts):
    conversation_id = alice.new_conversation()
    tab_a = open_chat(f"/c/{conversation_id}/")
    tab_b = open_chat(f"/c/{conversation_id}/")
    wait_socket(tab_a)
    wait_socket(tab_b)
    indicator_a = tab_a.get_by_test_id("typing-indicator")
    indicator_b = tab_b.get_by_test_id("typing-indicator")
    expect(indicator_b).to_be_hidden()
    tab_a.get_by_test_id("composer").press_sequentially("Hel", delay=50)
    expect(indicator_b).to_be_visible()
    expect(indicator_b).to_have_text("alice is typing…")
    expect(tab_b.locator("[aria-live=polite]").filter(has=indicator_b)).to_have_count(1)
    tab_b.screenshot(path=str(artifacts / "typing-indicator.png"))
    expect(indicator_a).to_be_hidden()  # never shown in the tab that types
    # Idle for ~3 s: A says it stopped.
    expect(indicator_b).to_be_hidden(timeout=6_000)
    # Typing again, then sending: hidden at once (well before the idle timeout).
    tab_a.get_by_test_id("composer").press_sequentially("lo", delay=50)
    expect(indicator_b).to_be_visible()
    upstream.push(tokens=words(5), rate=50)
    tab_a.get_by_test_id("composer").press("Enter")
    expect(indicator_b).to_be_hidden(timeout=1_500)
    wait_status(tab_b, "complete")
    expect(indicator_a).to_be_hidden()


def test_typing_indicator_goes_when_the_typing_tab_closes(open_chat, alice):
    conversation_id = alice.new_conversation()
    tab_a = open_chat(f"/c/{conversation_id}/")
    tab_b = open_chat(f"/c/{conversation_id}/")
    wait_socket(tab_a)
    wait_socket(tab_b)
    tab_a.get_by_test_id("composer").press_sequentially("typing then leaving", delay=20)
    indicator_b = tab_b.get_by_test_id("typing-indicator")
    expect(indicator_b).to_be_visible()
    tab_a.close()
    expect(indicator_b).to_be_hidden(timeout=2_000)


# --- reconnecting --------------------------------------------------------------------------------


def test_the_socket_reconnects_after_a_drop_and_frames_flow_again(open_chat, upstream, alice):
    conversation_id = alice.new_conversation()
    routes: list[WebSocketRoute] = []

    def proxy(ws: WebSocketRoute) -> None:
        routes.append(ws)
        ws.connect_to_server()

    tab = open_chat(f"/c/{conversation_id}/")
    tab.route_web_socket(WS, proxy)
    tab.reload()  # the route sees the page's connections from the start
    wait_socket(tab)
    assert len(routes) == 1
    routes[0].close()  # the server side drops it, as a restart or a proxy timeout would
    wait_socket(tab, False)
    wait_socket(tab)  # back after the first backoff step (0.25-0.5 s)
    assert len(routes) == 2
    # State frames flow again: an answer started elsewhere (here over the API) shows up live.
    upstream.push(tokens=words(40), rate=20)
    with alice.post_stream(conversation_id, "Asked over the API") as response:
        expect(tab.locator("[data-testid=message][data-role=user]")).to_have_count(1)
        tab.wait_for_function(LIVE_IN_B)
        for _ in response.iter_lines():
            pass
    wait_status(tab, "complete")
    assert norm(answer_text(tab)) == norm("".join(words(40)))
