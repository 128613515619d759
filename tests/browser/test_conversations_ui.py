"""Conversations in the sidebar (rename inline, delete with undo, search that jumps to the message) and
the model picker with the system prompt editor, in real Chromium, also while an answer streams."""

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import answer, send, wait_status, wait_words, words
from tests.live import ROOT

SCREENSHOTS = ROOT / ".run" / "screenshots"


def conversation_id(page: Page) -> int:
    return int(re.search(r"/c/(\d+)/", page.url)[1])


def entry(page: Page, cid: int):
    return page.locator(f".conversation-item[data-conversation-id='{cid}']")


def unique(word: str) -> str:
    """A word no other test's conversation holds (the live app's database is shared by the session)."""
    return f"{word}{uuid.uuid4().hex[:6]}"


def conversation_status(alice, cid: int) -> int:
    return alice.http.get(f"/api/conversations/{cid}/").status_code


# --- rename ---------------------------------------------------------------------------------------


def test_rename_inline_enter_saves_escape_cancels(page, alice, live):
    cid = alice.new_conversation("Old name")
    page.reload()
    entry(page, cid).get_by_test_id("rename").click()
    box = entry(page, cid).get_by_test_id("rename-input")
    expect(box).to_be_focused()
    expect(box).to_have_value("Old name")
    box.fill("  Trip   to Lisbon ")
    box.press("Enter")
    expect(entry(page, cid).get_by_test_id("conversation-link")).to_have_text("Trip to Lisbon")
    expect(entry(page, cid).get_by_test_id("rename")).to_be_focused()  # the keyboard stays put
    assert alice.conversation(cid)["title"] == "Trip to Lisbon"

    entry(page, cid).get_by_test_id("rename").click()
    entry(page, cid).get_by_test_id("rename-input").fill("Never mind")
    entry(page, cid).get_by_test_id("rename-input").press("Escape")
    expect(entry(page, cid).get_by_test_id("rename-input")).to_have_count(0)
    expect(entry(page, cid).get_by_test_id("conversation-link")).to_have_text("Trip to Lisbon")
    page.reload()
    expect(entry(page, cid).get_by_test_id("conversation-link")).to_have_text("Trip to Lisbon")
    assert alice.conversation(cid)["title"] == "Trip to Lisbon"


def test_rename_the_conversation_whose_answer_streams(page, upstream, alice):
    upstream.push(tokens=words(200), rate=25)
    send(page, "A long story please")
    wait_words(page, 3)
    cid = conversation_id(page)
    entry(page, cid).get_by_test_id("rename").click()
    box = entry(page, cid).get_by_test_id("rename-input")
    box.fill("Bedtime story")
    box.press("Escape")  # cancels the rename only: the answer goes on
    expect(answer(page)).to_have_attribute("data-status", "streaming")
    entry(page, cid).get_by_test_id("rename").click()
    entry(page, cid).get_by_test_id("rename-input").fill("Bedtime story")
    entry(page, cid).get_by_test_id("rename-input").press("Enter")
    expect(entry(page, cid).get_by_test_id("conversation-link")).to_have_text("Bedtime story")
    expect(page).to_have_title(re.compile("^Bedtime story"))
    expect(answer(page)).to_have_attribute("data-status", "streaming")
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    assert alice.conversation(cid)["title"] == "Bedtime story"  # the answer's end did not undo it
    page.reload()
    expect(entry(page, cid).get_by_test_id("conversation-link")).to_have_text("Bedtime story")


# --- delete with undo -----------------------------------------------------------------------------


def test_delete_then_undo_keeps_the_conversation_and_its_streaming_answer(page, upstream, alice, live):
    upstream.push(tokens=["Sure."])
    send(page, "Keep talking")
    wait_status(page, "complete")
    upstream.push(tokens=words(300), rate=30)
    send(page, "And more")
    wait_words(page, 3)
    cid = conversation_id(page)
    entry(page, cid).get_by_role("button", name=re.compile("Delete")).click()
    expect(entry(page, cid)).to_have_count(0)
    expect(page).to_have_url(f"{live.base_url}/")
    toast = page.get_by_test_id("undo-toast")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Keep talking")
    page.get_by_test_id("undo").click()
    expect(toast).to_be_hidden()
    expect(entry(page, cid)).to_have_count(1)
    expect(page).to_have_url(f"{live.base_url}/c/{cid}/")  # it was on screen: it comes back
    expect(answer(page)).to_have_attribute("data-status", "streaming")  # and its answer still streams
    time.sleep(6)  # past the undo window: nothing is sent
    assert conversation_status(alice, cid) == 200
    assert upstream.last().client_closed_at is None
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")


def test_delete_for_real_after_the_window_stops_the_streaming_answer(page, upstream, alice, live):
    other = alice.new_conversation("Stays")
    upstream.push(tokens=words(400), rate=30)
    send(page, "Delete me while you talk")
    wait_words(page, 3)
    cid = conversation_id(page)
    entry(page, cid).get_by_role("button", name=re.compile("Delete")).click()
    expect(entry(page, cid)).to_have_count(0)
    assert conversation_status(alice, cid) == 200  # within the window nothing is sent yet
    expect(page.get_by_test_id("undo-toast")).to_be_hidden(timeout=10_000)  # the window passed
    upstream.wait_for(lambda: conversation_status(alice, cid) == 404, 5, "the DELETE")
    upstream.wait_for(lambda: upstream.last().client_closed_at, 5, "the answer to be stopped")
    expect(entry(page, other)).to_have_count(1)
    page.reload()
    expect(entry(page, cid)).to_have_count(0)
    expect(entry(page, other)).to_have_count(1)


def test_a_second_delete_sends_the_first_and_leaving_the_page_sends_the_last(page, alice, live):
    first = alice.new_conversation("First to go")
    second = alice.new_conversation("Second to go")
    page.reload()
    entry(page, first).get_by_role("button", name=re.compile("Delete")).click()
    entry(page, second).get_by_role("button", name=re.compile("Delete")).click()
    expect(page.get_by_test_id("undo-toast")).to_contain_text("Second to go")
    upstream_wait(lambda: conversation_status(alice, first) == 404, "the first DELETE")
    assert conversation_status(alice, second) == 200
    page.goto(f"{live.base_url}/accounts/password_change/")  # away, inside the undo window
    upstream_wait(lambda: conversation_status(alice, second) == 404, "the DELETE sent on leaving")


def upstream_wait(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- search ---------------------------------------------------------------------------------------


def test_search_lists_snippets_and_jumps_to_the_message(page, upstream, alice, live):
    word = unique("zebra")
    cid = alice.new_conversation("Animals")
    for i in range(8):  # a long conversation: the match is far above the latest message
        upstream.push(tokens=[f"Answer {i}. " * 40])
        question = f"Tell me about the {word} crossing" if i == 1 else f"Question {i} about lions"
        with alice.post_stream(cid, question) as r:
            r.read()
    target = next(m for m in alice.conversation(cid)["messages"] if word in m["content"])["id"]
    other = alice.new_conversation(f"Notes on {word}s")  # found by its title

    search = page.get_by_test_id("search")
    search.fill(word[:8])  # a prefix, as typed
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(2)
    expect(results.first).to_have_text(f"Notes on {word}s")
    match = page.get_by_test_id("search-match")
    expect(match).to_have_count(1)
    expect(match).to_have_text(f"Tell me about the {word} crossing")
    expect(match.locator("mark")).to_have_text(word[:8])
    expect(page.get_by_test_id("conversation-link")).to_have_count(0)  # the list makes way for results
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "search.png"))

    match.click()
    expect(page).to_have_url(f"{live.base_url}/c/{cid}/")
    found = page.locator(f"[data-testid=message][data-message-id='{target}']")
    expect(found).to_have_attribute("data-found", "true")
    expect(found).to_be_in_viewport()
    expect(page.locator("[data-testid=message]").last).not_to_be_in_viewport()

    search.press("Escape")  # clears the search: the list is back
    expect(search).to_have_value("")
    expect(entry(page, other)).to_have_count(1)
    page.goto(f"{live.base_url}/c/{cid}/#message-{target}")  # the address works on its own too
    expect(page.locator(f"[data-message-id='{target}']")).to_have_attribute("data-found", "true")
    expect(page.locator(f"[data-message-id='{target}']")).to_be_in_viewport()


def test_a_search_hit_on_an_earlier_version_shows_the_branch_it_is_on(page, upstream, alice):
    word = unique("okapi")
    cid = alice.new_conversation("Edited")
    upstream.push(tokens=["The first answer."])
    with alice.post_stream(cid, f"Tell me about the {word}") as r:
        r.read()
    question = alice.conversation(cid)["messages"][0]["id"]
    upstream.push(tokens=["The second answer."])
    with alice.http.stream("POST", f"/api/messages/{question}/edit/", json={"content": "Tell me about lions"}) as r:
        r.read()  # the edit is the newest version: the question with the word is off screen now

    page.get_by_test_id("search").fill(word)
    match = page.get_by_test_id("search-match")
    expect(match).to_have_text(f"Tell me about the {word}")
    match.click()
    found = page.locator(f"[data-testid=message][data-message-id='{question}']")
    expect(found).to_have_attribute("data-found", "true")
    expect(found.get_by_test_id("version-label")).to_have_text("1/2")
    expect(page.get_by_test_id("message").last).to_contain_text("The first answer.")
    page.reload()  # the branch picked stays only while the page does: the newest comes back
    expect(page.get_by_test_id("message").first).to_contain_text("Tell me about lions")


def test_jumping_to_an_earlier_message_while_the_answer_streams_stays_there(page, upstream, alice):
    word = unique("walrus")
    for i in range(6):
        upstream.push(tokens=[f"Reply {i}. " * 40])
        send(page, f"The {word} question" if i == 0 else f"Filler question {i}")
        wait_status(page, "complete")
    cid = conversation_id(page)
    upstream.push(tokens=words(300), rate=30)
    send(page, "Now a long answer")
    wait_words(page, 3)
    page.get_by_test_id("search").fill(word)
    page.get_by_test_id("search-match").click()
    found = page.locator("[data-testid=message][data-found=true]")
    expect(found).to_have_count(1)
    expect(found).to_contain_text(f"The {word} question")
    expect(answer(page)).to_have_attribute("data-status", "streaming")  # re-attached, still streaming
    wait_words(page, 40)
    expect(found).to_be_in_viewport()  # the growing answer did not pull the page down
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    assert conversation_id(page) == cid


# --- model picker and system prompt ---------------------------------------------------------------


@pytest.fixture
def two_models(upstream, alice):
    """The upstream lists another model too (the live app's cached list refreshed); put back after."""
    upstream.models = ["scripted", "other-model"]
    alice.http.get("/api/models/?refresh=1")
    yield
    upstream.models = ["scripted"]
    alice.http.get("/api/models/?refresh=1")


def test_model_and_system_prompt_are_remembered_and_used_also_while_streaming(page, upstream, alice, two_models):
    page.reload()
    picker = page.get_by_test_id("model-picker")
    expect(picker).to_be_enabled()
    expect(picker.locator("option")).to_have_text(["scripted-model (default)", "scripted", "other-model"])
    expect(picker).to_have_value("scripted-model")

    # Chosen before the chat exists: it goes with the first message.
    picker.select_option("scripted")
    upstream.push(tokens=words(300), rate=30)
    send(page, "First question")
    wait_words(page, 3)
    assert upstream.last().body["model"] == "scripted"
    cid = conversation_id(page)

    # Changed while the answer streams: remembered, and used by the next answer.
    picker.select_option("other-model")
    upstream_wait(lambda: alice.conversation(cid)["model"] == "other-model", "the PATCH")
    page.get_by_test_id("system-prompt").click()
    prompt = page.get_by_test_id("system-prompt-input")
    expect(prompt).to_be_focused()
    prompt.fill("Answer in French.")
    page.get_by_test_id("system-prompt-save").click()
    expect(page.get_by_test_id("system-prompt")).to_have_attribute("aria-pressed", "true")
    upstream_wait(lambda: alice.conversation(cid)["system_prompt"] == "Answer in French.", "the PATCH")
    expect(answer(page)).to_have_attribute("data-status", "streaming")

    page.reload()
    expect(page.get_by_test_id("model-picker")).to_have_value("other-model")
    expect(answer(page)).to_have_attribute("data-status", "streaming")  # re-attached after the reload
    expect(page.get_by_test_id("system-prompt")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")

    upstream.push(tokens=["Bonjour."])
    send(page, "Second question")
    wait_status(page, "complete")
    sent = upstream.last().body
    assert sent["model"] == "other-model"
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    answers = [m for m in alice.conversation(cid)["messages"] if m["role"] == "assistant"]
    assert [a["stats"]["model"] for a in answers] == ["scripted", "other-model"]

    # Esc in the editor closes it and keeps what was saved (and does not stop anything).
    page.get_by_test_id("system-prompt").click()
    page.get_by_test_id("system-prompt-input").fill("Something else")
    page.keyboard.press("Escape")
    expect(page.locator("#system-prompt-dialog")).not_to_be_visible()
    assert alice.conversation(cid)["system_prompt"] == "Answer in French."

    # Another conversation shows its own (the default); coming back shows this one's again.
    page.get_by_test_id("new-conversation").click()
    expect(page.get_by_test_id("model-picker")).to_have_value("scripted-model")
    expect(page.get_by_test_id("system-prompt")).to_have_attribute("aria-pressed", "false")
    entry(page, cid).get_by_test_id("conversation-link").click()
    expect(page.get_by_test_id("model-picker")).to_have_value("other-model")


def test_with_one_model_the_picker_shows_it_and_says_so(page, upstream, alice):
    upstream.models = ["scripted-model"]
    alice.http.get("/api/models/?refresh=1")
    try:
        page.reload()
        picker = page.get_by_test_id("model-picker")
        expect(picker).to_have_attribute("title", "Only one model is available: scripted-model")
        expect(picker).to_be_disabled()
        expect(picker.locator("option")).to_have_text(["scripted-model (default)"])
    finally:
        upstream.models = ["scripted"]
        alice.http.get("/api/models/?refresh=1")
