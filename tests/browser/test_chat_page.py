"""The pages around the stream: login, composer, sidebar, phone width, keyboard."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import login
from tests.browser.helpers import answer, send, wait_status, words


def test_login_form_shows_errors_then_signs_in(browser, live):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.base_url}/c/1/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Username")).to_have_value("alice")
    login(page, live.base_url, "alice")
    expect(page.get_by_test_id("composer")).to_be_focused()
    context.close()


def test_logout_is_a_post_form(browser, live):
    context = browser.new_context()  # its own session: the shared one must stay signed in
    page = context.new_page()
    login(page, live.base_url, "bob")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.goto(f"{live.base_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    context.close()


def test_enter_sends_shift_enter_adds_a_line_and_no_double_submit(page, upstream):
    upstream.push(tokens=words(30), rate=30)
    composer = page.get_by_test_id("composer")
    composer.type("first line")
    composer.press("Shift+Enter")
    composer.type("second line")
    composer.press("Enter")
    composer.press("Enter")  # the composer is empty and busy now: ignored
    page.get_by_test_id("send").click(force=True)
    wait_status(page, "complete")
    users = page.locator("[data-testid=message][data-role=user]")
    expect(users).to_have_count(1)
    expect(users.get_by_test_id("message-text")).to_have_text("first line\nsecond line")
    assert len(upstream.records) == 1
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))


def test_send_is_disabled_while_streaming(page, upstream):
    upstream.push(tokens=words(200), rate=25)
    send(page, "Go")
    page.get_by_test_id("composer").fill("queued text")
    expect(page.get_by_test_id("send")).to_be_disabled()
    page.get_by_test_id("composer").press("Enter")
    expect(page.locator("[data-testid=message][data-role=user]")).to_have_count(1)
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    expect(page.get_by_test_id("send")).to_be_enabled()


def test_sidebar_new_switch_delete(page, upstream, live):
    upstream.push(tokens=["Answer ", "one."])
    send(page, "Topic one")
    wait_status(page, "complete")
    first_url = page.url
    page.get_by_test_id("new-conversation").click()
    expect(page).not_to_have_url(first_url)
    expect(page.locator("[data-testid=message]")).to_have_count(0)
    upstream.push(tokens=["Answer ", "two."])
    send(page, "Topic two")
    wait_status(page, "complete")
    links = page.get_by_test_id("conversation-link")
    expect(links.filter(has_text="Topic one")).to_have_count(1)
    expect(links.filter(has_text="Topic two")).to_have_count(1)
    expect(links.first).to_have_text("Topic two")  # newest first
    links.filter(has_text="Topic one").first.click()
    expect(page).to_have_url(first_url)
    expect(answer(page).get_by_test_id("message-text")).to_have_text("Answer one.")
    page.go_back()
    expect(answer(page).get_by_test_id("message-text")).to_have_text("Answer two.")
    item = page.locator(".conversation-item", has=page.get_by_test_id("conversation-link").filter(has_text="Topic two"))
    item.get_by_role("button", name=re.compile("Delete")).click()
    expect(links.filter(has_text="Topic two")).to_have_count(0)
    expect(page).to_have_url(f"{live.base_url}/")
    expect(page.locator("[data-testid=message]")).to_have_count(0)


def test_direct_link_to_a_conversation_loads_it(page, upstream, alice, live):
    conversation_id = alice.new_conversation("Linked")
    upstream.push(tokens=["Stored ", "answer."])
    with alice.post_stream(conversation_id, "hello") as response:
        response.read()
    page.goto(f"{live.base_url}/c/{conversation_id}/")
    expect(answer(page).get_by_test_id("message-text")).to_have_text("Stored answer.")
    expect(answer(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".conversation-item.is-active")).to_contain_text("Linked")


def test_phone_width_uses_a_drawer(page, upstream):
    page.set_viewport_size({"width": 390, "height": 800})
    off_screen = "() => document.getElementById('sidebar').getBoundingClientRect().right <= 0"
    expect(page.get_by_test_id("composer")).to_be_visible()
    page.wait_for_function(off_screen)  # it slides away (a 0.2 s transition)
    page.get_by_role("button", name="Open conversations").click()
    expect(page.get_by_test_id("new-conversation")).to_be_in_viewport()
    page.keyboard.press("Escape")
    page.wait_for_function(off_screen)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing overflows sideways"


def test_keyboard_only_send(page, upstream):
    upstream.push(tokens=["Keyboard ", "works."])
    expect(page.get_by_test_id("composer")).to_be_focused()  # ready to type on arrival
    skip = page.get_by_role("link", name="Skip to message box")
    skip.focus()
    expect(skip).to_be_in_viewport()  # shown when focused
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("composer")).to_be_focused()
    page.keyboard.type("via keyboard")
    page.keyboard.press("Enter")
    wait_status(page, "complete")
    expect(page.locator("#message-list")).to_have_attribute("aria-live", "polite")


STRICT_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


def test_page_works_under_a_strict_content_security_policy(context, live, upstream):
    """No inline script or style: the page runs with the CSP the server sends (added here too)."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))

    def with_csp(route):
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})

    page.route(re.compile(r"^http://127\.0\.0\.1:\d+/(c/\d+/)?$"), with_csp)
    page.add_init_script("""window.__csp = [];
        document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective));""")
    page.goto(f"{live.base_url}/")
    expect(page.locator("html")).to_have_attribute("data-ready", "true")
    upstream.push(tokens=["Some **bold** text.\n\n", "```python\n", "x = 1\n", "```\n"], rate=40)
    send(page, "Under CSP")
    wait_status(page, "complete")
    expect(answer(page).locator("pre code")).to_contain_text("x = 1")
    page.reload()
    expect(answer(page)).to_have_attribute("data-status", "complete")
    assert page.evaluate("window.__csp") == [], "the page broke its CSP"
    assert not errors, errors
    # The policy is really in force: an inline script is refused.
    page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__inline = 1'; document.body.append(s); }""")
    page.wait_for_function("window.__csp.length > 0")
    assert page.evaluate("window.__inline") is None
