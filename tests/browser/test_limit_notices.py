"""A refused message, in Chromium against a live server with tight limits: the page says why in
plain words next to the composer, keeps the typed text, frees the composer, leaves no bubble, and
clears the notice once a message goes through."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.chromium import login
from tests.conftest import LIVE_ENV, PASSWORD
from tests.live import LiveApp

# One answer streaming per user at once, three messages a minute.
LIMITS = {"CHAT_USER_CONCURRENCY": "1", "CHAT_USER_RATE_PER_MIN": "3"}


@pytest.fixture(scope="module")
def limited(upstream_server, tmp_path_factory):
    env = {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV, **LIMITS}
    with LiveApp(tmp_path_factory.mktemp("limited-page"), env) as app:
        yield app


@pytest.fixture
def user_page(browser, limited, upstream):
    """A signed-in page of a fresh user of the limited server; dialogs and page errors fail the test."""
    contexts = []
    errors: list[str] = []

    def open_page(username: str) -> Page:
        limited.create_user(username, PASSWORD)
        context = browser.new_context(viewport={"width": 1200, "height": 800})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
        login(page, limited.base_url, username, PASSWORD)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, errors


def type_and_send(page: Page, text: str) -> None:
    composer = page.get_by_test_id("composer")
    composer.fill(text)
    composer.press("Enter")


def messages(page: Page):
    return page.locator("[data-testid=message]")


def last_answer_status(page: Page, status: str) -> None:
    expect(page.locator("[data-testid=message][data-role=assistant]").last).to_have_attribute(
        "data-status", status, timeout=15_000
    )


def expect_refused(page: Page, typed: str, notice: str | re.Pattern) -> None:
    """The refusal as a person sees it: the reason, their text, a free composer, no bubble."""
    box = page.get_by_test_id("composer-notice")
    expect(box).to_have_text(notice)
    expect(box).to_have_attribute("role", "status")
    expect(box).to_be_visible()
    expect(page.get_by_test_id("composer")).to_have_value(typed)
    expect(page.get_by_test_id("composer")).to_be_enabled()
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.get_by_test_id("stop")).to_be_hidden()


def test_a_second_answer_while_one_streams_elsewhere_is_refused_in_plain_words(user_page, limited, upstream):
    page = user_page("nell")
    upstream.name("long", tokens=[f"w{i} " for i in range(2000)], rate=40)
    type_and_send(page, "[script:long] a long one")
    expect(page.locator("[data-testid=message][data-role=assistant]")).to_have_attribute("data-status", "streaming")
    first = re.search(r"/c/(\d+)/", page.url)[1]

    page.get_by_test_id("new-conversation").click()
    page.wait_for_url(re.compile(rf"/c/(?!{first}/)\d+/"))  # a new, empty conversation
    type_and_send(page, "And a second question")
    expect_refused(page, "And a second question", "You have an answer streaming already; wait for it to finish.")
    expect(messages(page)).to_have_count(0)  # nothing was stored, and nothing pretends it was

    # The first answer ends (stopped from its own conversation): the same text now goes through.
    api = limited.client("nell")
    answer_id = api.conversation(int(first))["messages"][-1]["id"]
    assert api.cancel(answer_id).status_code in (200, 202)
    api.close()
    upstream.default.tokens = ["Sure, ", "here ", "it is."]
    page.get_by_test_id("send").click()
    last_answer_status(page, "complete")
    expect(page.get_by_test_id("composer-notice")).to_have_text("")
    expect(messages(page)).to_have_count(2)
    expect(page.get_by_test_id("composer")).to_have_value("")


def test_too_many_messages_a_minute_says_how_long_to_wait(user_page, upstream):
    page = user_page("rita")
    upstream.default.tokens = ["ok"]
    for i in range(3):
        type_and_send(page, f"message {i}")
        last_answer_status(page, "complete")
    type_and_send(page, "one too many")
    expect_refused(page, "one too many", re.compile(r"^You're sending messages too fast; try again in \d+ s\.$"))
    seconds = int(re.search(r"in (\d+) s", page.get_by_test_id("composer-notice").text_content())[1])
    assert 1 <= seconds <= 60
    expect(messages(page)).to_have_count(6)  # the three exchanges, no bubble for the refused one
    expect(page.locator("#banner")).to_be_hidden()  # said once, next to the composer
