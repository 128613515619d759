"""The admin's review tool in real Chromium: a reviewer watches alice's answer arrive live in the
conversation's transcript, sees her typing, and finds thumbs-down answers through the message list."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.helpers import answer_text, norm, send, wait_status, wait_words, words
from tests.conftest import PASSWORD

SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / ".run" / "screenshots"

# Markdown with a code block, and HTML a prompt injection could make the model write.
MARKDOWN_ANSWER = [
    "## Plan\n\n",
    "Some **bold** words ",
    "and `inline code`.\n\n",
    "```python\n",
    "print('hi')\n",
    "```\n\n",
    '<img src="/static/missing.png" onerror="window.__pwned = 1"> ',
    "<script>window.__pwned = 2</script>\n\n",
    *words(300),
]


@pytest.fixture(scope="module")
def reviewer_state(browser, live, tmp_path_factory) -> str:
    """rosa_reviewer: staff who may view conversations and messages (nothing more), signed in through the admin."""
    live.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from django.contrib.auth.models import Permission; "
        f"u = get_user_model().objects.create_user('rosa_reviewer', password={PASSWORD!r}, is_staff=True); "
        "u.user_permissions.add(*Permission.objects.filter(codename__in=['view_conversation', 'view_message']))",
    )
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live.base_url}/admin/login/?next=/admin/")
    page.locator("#id_username").fill("rosa_reviewer")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("input[type=submit]").click()
    expect(page.locator("#user-tools")).to_contain_text("rosa_reviewer")
    path = str(tmp_path_factory.mktemp("browser") / "rosa_reviewer.json")
    context.storage_state(path=path)
    context.close()
    return path


@pytest.fixture
def reviewer(browser, live, reviewer_state, upstream):
    """rosa_reviewer's admin tab; JavaScript errors in it fail the test."""
    context: BrowserContext = browser.new_context(storage_state=reviewer_state, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors in the admin: {errors}"


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def conversation_of(page: Page) -> int:
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def words_in(tab: Page, locator: str) -> int:
    return len(tab.locator(locator).inner_text().split())


def test_a_reviewer_watches_the_answer_arrive_and_sees_the_owner_typing(page, reviewer, live, upstream, screenshots):
    frames_sent: list[str] = []
    reviewer.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames_sent.append(str(payload))))
    upstream.push(tokens=MARKDOWN_ANSWER, rate=25)
    send(page, "Make a plan")
    wait_words(page, 12)
    cid = conversation_of(page)

    reviewer.goto(f"{live.base_url}/admin/chat/conversation/{cid}/change/")
    expect(reviewer.get_by_test_id("live-status")).to_be_visible()
    answer = reviewer.locator("[data-testid=message][data-role=assistant]").last
    text = answer.get_by_test_id("message-text")
    expect(answer).to_have_attribute("data-status", "streaming")
    reviewer.wait_for_function("() => window.__adminSocket && window.__adminSocket.isOpen()")
    # The text grows on the reviewer's screen while alice's answer streams.
    reviewer.wait_for_function(
        "n => document.querySelector('[data-role=assistant][data-status=streaming] [data-testid=message-text]')"
        ".textContent.split(/\\s+/).filter(Boolean).length >= n",
        arg=30,
    )
    first = words_in(reviewer, "[data-role=assistant] [data-testid=message-text]")
    reviewer.wait_for_function(
        "n => document.querySelector('[data-role=assistant] [data-testid=message-text]')"
        ".textContent.split(/\\s+/).filter(Boolean).length >= n",
        arg=first + 25,
    )
    # The chat page's own renderer: Markdown, a code block, and nothing from the model that runs.
    expect(text.locator("h2")).to_have_text("Plan")
    expect(text.locator("strong")).to_have_text("bold")
    expect(text.locator(".code-block pre code")).to_have_text("print('hi')\n")
    expect(text.locator("img, script")).to_have_count(0)
    assert reviewer.evaluate("() => window.__pwned") is None

    indicator = reviewer.get_by_test_id("typing-indicator")
    expect(indicator).to_be_hidden()
    page.get_by_test_id("composer").press_sequentially("Thanks, and", delay=60)
    expect(indicator).to_be_visible()
    expect(indicator).to_have_text("alice is typing…")
    answer.scroll_into_view_if_needed()
    reviewer.screenshot(path=str(screenshots / "admin-transcript.png"), full_page=True)

    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    # The answer ended: the transcript is reloaded from the server, status and figures included.
    expect(answer).to_have_attribute("data-status", "cancelled")
    expect(reviewer.get_by_test_id("live-status")).to_be_hidden()
    expect(answer.get_by_test_id("message-status")).to_have_text("Cancelled")
    expect(answer.get_by_test_id("answer-stats")).to_contain_text("scripted-model")
    assert norm(answer.get_by_test_id("message-text").inner_text()) == norm(answer_text(page))
    assert 30 < len(norm(answer_text(page)).split()) < 300
    assert frames_sent == [], "the watching admin page sent frames"

    # A new question from alice shows up, and its answer is followed too.
    upstream.push(tokens=words(40), rate=40)
    page.get_by_test_id("composer").fill("One more")
    page.get_by_test_id("composer").press("Enter")
    expect(reviewer.locator("[data-testid=message][data-role=user]").last.get_by_test_id("message-text")).to_have_text(
        "One more"
    )
    wait_status(page, "complete")
    last = reviewer.locator("[data-testid=message][data-role=assistant]").last
    expect(last).to_have_attribute("data-status", "complete")
    assert norm(last.get_by_test_id("message-text").inner_text()) == norm(answer_text(page))


def seed_feedback(live) -> dict:
    """alice's conversation with a liked, a disliked and an unrated answer, written straight to the database."""
    script = """
import json
from django.contrib.auth import get_user_model
from chat.models import Conversation, Feedback, Message
alice = get_user_model().objects.get(username="alice")
c = Conversation.objects.create(owner=alice, title="Sourdough questions")
ids = {}
for name, question, answer, rating, comment in [
    ("liked", "How long to proof?", "About **4 hours** at room temperature.", 1, "spot on"),
    ("disliked", "Why is my crumb dense?", "Use more `yeast`.", -1, "Wrong: sourdough has no added yeast."),
    ("unrated", "Thanks!", "You are welcome.", 0, ""),
]:
    Message.objects.create(conversation=c, role="user", content=question)
    m = Message.objects.create(conversation=c, role="assistant", content=answer, model="scripted-model",
                               ttft_ms=90, tokens=12, duration_ms=600, finish_reason="stop")
    if rating:
        Feedback.objects.create(message=m, user=alice, rating=rating, comment=comment)
    ids[name] = m.pk
ids["conversation"] = c.pk
print(json.dumps(ids))
"""
    return json.loads(live.manage("shell", "-c", script).strip().splitlines()[-1])


def test_thumbs_down_answers_are_found_and_open_in_their_transcript(reviewer, live, screenshots):
    ids = seed_feedback(live)
    reviewer.goto(f"{live.base_url}/admin/chat/message/?feedback=down")
    row = reviewer.locator("#result_list tbody tr").filter(has_text="Use more")
    expect(row).to_have_count(1)
    expect(row.locator("[data-rating=down]")).to_be_visible()
    expect(row).to_contain_text("Wrong: sourdough has no added yeast.")
    expect(reviewer.locator("#result_list")).not_to_contain_text("About")
    expect(reviewer.locator("#result_list")).not_to_contain_text("You are welcome.")
    expect(reviewer.locator("#changelist-filter")).to_contain_text("thumbs down")
    reviewer.screenshot(path=str(screenshots / "admin-feedback-filter.png"), full_page=True)

    row.get_by_role("link", name="Use more").click()
    reviewer.wait_for_url(f"**/admin/chat/conversation/{ids['conversation']}/change/#message-{ids['disliked']}")
    target = reviewer.locator(f"#message-{ids['disliked']}")
    expect(target).to_be_in_viewport()
    expect(target.get_by_test_id("feedback")).to_contain_text("👎")
    expect(target.get_by_test_id("feedback")).to_contain_text("Wrong: sourdough has no added yeast.")
    expect(target.locator("[data-testid=message-text] code")).to_have_text("yeast")  # Markdown, rendered
    liked = reviewer.locator(f"#message-{ids['liked']}")
    expect(liked.locator("[data-testid=message-text] strong")).to_have_text("4 hours")
    expect(liked.get_by_test_id("feedback")).to_contain_text("spot on")
    expect(reviewer.locator(f"#message-{ids['unrated']}").get_by_test_id("feedback")).to_have_count(0)
