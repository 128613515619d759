"""Feedback on answers in the chat page: thumbs up or down, a comment, after a reload, taken back;
never offered while an answer streams."""

import re

from playwright.sync_api import Page, expect

from tests.browser.helpers import answer, send, wait_status, wait_words, words
from tests.live import ROOT

SCREENSHOTS = ROOT / ".run" / "screenshots"


def conversation_id(page: Page) -> int:
    return int(re.search(r"/c/(\d+)/", page.url)[1])


def stored_feedback(client, page: Page):
    """What the server holds for the last answer on the page (the conversation JSON)."""
    return client.answer(conversation_id(page))["feedback"]


def test_thumbs_down_with_a_comment_survives_a_reload_then_changes_and_goes(page, upstream, alice):
    upstream.push(tokens=words(12))
    send(page, "Why are there tides?")
    wait_status(page, "complete")
    reply = answer(page)
    up, down = reply.get_by_test_id("feedback-up"), reply.get_by_test_id("feedback-down")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(reply.get_by_test_id("feedback-form")).to_be_hidden()

    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    comment = reply.get_by_test_id("feedback-comment")
    expect(comment).to_be_focused()  # the optional comment opens right away, ready to type
    comment.fill("It forgets the moon.")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "feedback.png"))
    comment.press("Enter")
    expect(reply.get_by_test_id("feedback-form")).to_be_hidden()
    expect(reply.get_by_test_id("feedback-note")).to_have_text("It forgets the moon.")
    expect(down).to_be_focused()
    assert stored_feedback(alice, page) == {"rating": -1, "comment": "It forgets the moon."}

    page.reload()
    reply = answer(page)
    up, down = reply.get_by_test_id("feedback-up"), reply.get_by_test_id("feedback-down")
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(reply.get_by_test_id("feedback-note")).to_have_text("It forgets the moon.")

    # Change to thumbs up from the keyboard; the comment stays; Esc closes the form.
    down.focus()
    page.keyboard.press("Shift+Tab")
    expect(up).to_be_focused()
    page.keyboard.press("Space")
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    comment = reply.get_by_test_id("feedback-comment")
    expect(comment).to_be_focused()
    expect(comment).to_have_value("It forgets the moon.")
    comment.press("Escape")
    expect(reply.get_by_test_id("feedback-form")).to_be_hidden()
    expect(up).to_be_focused()
    assert stored_feedback(alice, page) == {"rating": 1, "comment": "It forgets the moon."}

    # Pressing the chosen thumb again takes the feedback back.
    up.click()
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(reply.get_by_test_id("feedback-note")).to_be_hidden()
    expect(reply.get_by_test_id("feedback-form")).to_be_hidden()
    assert stored_feedback(alice, page) is None
    page.reload()
    expect(answer(page).get_by_test_id("feedback-up")).to_have_attribute("aria-pressed", "false")
    expect(answer(page).get_by_test_id("feedback-down")).to_have_attribute("aria-pressed", "false")


def test_a_comment_is_edited_from_its_note_and_cleared_by_saving_it_empty(page, upstream, alice):
    upstream.push(tokens=words(8))
    send(page, "Name a colour")
    wait_status(page, "complete")
    reply = answer(page)
    reply.get_by_test_id("feedback-up").click()
    reply.get_by_test_id("feedback-comment").fill("Clear and short.")
    reply.get_by_test_id("feedback-save").click()
    note = reply.get_by_test_id("feedback-note")
    expect(note).to_have_text("Clear and short.")
    note.click()
    comment = reply.get_by_test_id("feedback-comment")
    expect(comment).to_have_value("Clear and short.")
    comment.fill("")
    comment.press("Enter")
    expect(note).to_have_text("Add a comment")
    assert stored_feedback(alice, page) == {"rating": 1, "comment": ""}


def test_not_offered_while_the_answer_streams_even_after_a_reload(page, upstream, alice):
    upstream.push(tokens=words(400), rate=40)
    send(page, "Tell me a long story")
    wait_words(page, 3)
    reply = answer(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply.get_by_test_id("feedback-up")).to_be_hidden()
    expect(reply.get_by_test_id("feedback-down")).to_be_hidden()

    page.reload()  # re-attached to the running answer: still nothing to rate
    wait_words(page, 3)
    reply = answer(page)
    expect(reply).to_have_attribute("data-status", "streaming")
    expect(reply.get_by_test_id("feedback-down")).to_be_hidden()

    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    down = reply.get_by_test_id("feedback-down")
    expect(down).to_be_visible()  # it ended (stopped): now it may be rated
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    assert stored_feedback(alice, page) == {"rating": -1, "comment": ""}


def test_a_refused_rating_says_why_and_presses_nothing(page, upstream, alice):
    upstream.push(tokens=words(6))
    send(page, "Short one")
    wait_status(page, "complete")
    assert alice.http.delete(f"/api/conversations/{conversation_id(page)}/").status_code == 204  # another tab
    reply = answer(page)
    reply.get_by_test_id("feedback-up").click()
    expect(reply.get_by_test_id("feedback-error")).to_have_text("This answer no longer exists.")
    expect(reply.get_by_test_id("feedback-up")).to_have_attribute("aria-pressed", "false")
    expect(reply.get_by_test_id("feedback-form")).to_be_hidden()
