"""Regenerate, edit and Continue on the chat page, with the versions control (n/m), in real Chromium."""

from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import answer, answer_text, norm, send, wait_status, wait_words, words

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"


def messages(page, role: str):
    return page.locator(f"[data-testid=message][data-role={role}]")


def test_regenerate_streams_a_second_version_and_the_arrows_switch_between_them(page, upstream):
    upstream.push(tokens=words(3))
    send(page, "Tell me something")
    wait_status(page, "complete")
    first = answer_text(page)
    upstream.push(tokens=["second ", "version ", *words(30)], rate=40)
    answer(page).get_by_test_id("regenerate").click()
    wait_words(page, 4)  # it streams where the old answer was
    expect(answer(page)).to_have_attribute("data-status", "streaming")
    expect(messages(page, "assistant")).to_have_count(1)
    expect(answer(page).get_by_test_id("regenerate")).to_be_hidden()
    wait_status(page, "complete")
    expect(answer(page).get_by_test_id("version-label")).to_have_text("2/2")
    second = answer_text(page)
    assert second.startswith("second version")
    answer(page).get_by_test_id("version-prev").click()
    expect(answer(page).get_by_test_id("version-label")).to_have_text("1/2")
    assert answer_text(page) == first
    page.reload()  # the newest stays the one on screen
    expect(answer(page).get_by_test_id("version-label")).to_have_text("2/2")
    assert norm(answer_text(page)) == norm(second)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "versions.png"))


def test_edit_resends_the_question_and_keeps_the_old_branch(page, upstream):
    upstream.push(tokens=words(2))
    send(page, "first question")
    wait_status(page, "complete")
    upstream.push(tokens=words(2, 10))
    send(page, "second question")
    wait_status(page, "complete")
    first_question = messages(page, "user").first
    first_question.get_by_test_id("edit").click()
    editor = page.get_by_test_id("edit-input")
    editor.fill("first question, better")
    upstream.push(tokens=["edited ", "answer ", *words(20)], rate=40)
    editor.press("Enter")
    wait_words(page, 2)
    expect(messages(page, "user")).to_have_count(1)  # the later turn belongs to the old branch
    wait_status(page, "complete")
    expect(messages(page, "user").first.get_by_test_id("message-text")).to_have_text("first question, better")
    label = messages(page, "user").first.get_by_test_id("version-label")
    expect(label).to_have_text("2/2")
    messages(page, "user").first.get_by_test_id("version-prev").click()
    expect(messages(page, "user")).to_have_count(2)  # the old branch, whole
    expect(messages(page, "user").nth(1).get_by_test_id("message-text")).to_have_text("second question")


def test_continue_adds_to_a_stopped_answer_as_the_same_message(page, upstream):
    upstream.push(tokens=words(400), rate=40)
    send(page, "a long story")
    wait_words(page, 5)
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    before = answer_text(page)
    message_id = answer(page).get_attribute("data-message-id")
    upstream.push(tokens=["and ", "then ", *words(20, 500)], rate=40)
    answer(page).get_by_test_id("continue").click()
    wait_status(page, "complete")
    expect(messages(page, "assistant")).to_have_count(1)
    assert answer(page).get_attribute("data-message-id") == message_id
    after = answer_text(page)
    assert norm(after).startswith(norm(before)) and "and then" in after
    page.reload()
    assert norm(answer_text(page)) == norm(after)
    expect(answer(page).get_by_test_id("continue")).to_be_hidden()
