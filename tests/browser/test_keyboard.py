"""The chat page from the keyboard: Enter sends, Shift+Enter breaks the line, Esc stops the answer,
arrow-up in the empty composer edits the last message, and every button is reached by Tab and named."""

from playwright.sync_api import expect

from tests.browser.helpers import answer, send, wait_status, wait_words, words


def conversation_id(page) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_shift_enter_breaks_the_line_and_enter_sends(page, upstream):
    upstream.push(tokens=["Got ", "it."])
    composer = page.get_by_test_id("composer")
    composer.click()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    expect(composer).to_have_value("first line\nsecond line")
    expect(page.locator("[data-testid=message]")).to_have_count(0)  # nothing sent yet
    page.keyboard.press("Enter")
    user = page.locator("[data-testid=message][data-role=user]")
    expect(user.get_by_test_id("message-text")).to_have_text("first line\nsecond line")
    wait_status(page, "complete")
    expect(composer).to_have_value("")
    assert upstream.last().prompt[-1] == {"role": "user", "content": "first line\nsecond line"}


def test_escape_stops_the_answer_from_the_composer_and_from_anywhere(page, upstream, alice):
    for where in ("composer", "page"):
        upstream.push(tokens=words(400), rate=25)
        send(page, f"Stop me from the {where}")
        wait_words(page, 5)
        record = upstream.last()
        if where == "page":
            page.evaluate("document.activeElement.blur()")
        else:
            expect(page.get_by_test_id("composer")).to_be_focused()
        page.keyboard.press("Escape")
        wait_status(page, "cancelled")
        expect(page.get_by_test_id("stop")).to_be_hidden()
        upstream.wait_for(lambda r=record: r.client_closed_at is not None, what="the upstream to be closed")
        assert alice.answer(conversation_id(page))["status"] == "cancelled"
        assert len(answer(page).get_by_test_id("message-text").text_content().split()) < 400


def test_escape_with_nothing_streaming_changes_nothing(page, upstream):
    upstream.push(tokens=["Done."])
    send(page, "Hello")
    wait_status(page, "complete")
    page.get_by_test_id("composer").fill("a draft")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("composer")).to_have_value("a draft")
    wait_status(page, "complete")


def test_arrow_up_in_the_empty_composer_edits_the_last_message(page, upstream):
    upstream.push(tokens=["One."])
    send(page, "first question")
    wait_status(page, "complete")
    upstream.push(tokens=["Two."])
    send(page, "second\nquestion")
    wait_status(page, "complete")
    composer = page.get_by_test_id("composer")
    # Not empty: arrow-up moves the text cursor as usual, and nothing opens.
    composer.fill("draft")
    composer.press("ArrowUp")
    expect(page.get_by_test_id("edit-input")).to_have_count(0)
    expect(composer).to_be_focused()
    composer.fill("")
    composer.press("ArrowUp")
    editor = page.get_by_test_id("edit-input")
    expect(editor).to_have_count(1)
    expect(editor).to_be_focused()
    expect(editor).to_have_value("second\nquestion")  # the last message, not the first
    last_user = page.locator("[data-testid=message][data-role=user]").last
    expect(last_user.get_by_test_id("edit-input")).to_have_count(1)
    page.keyboard.press("Escape")  # closes the editor, nothing else
    expect(editor).to_have_count(0)
    expect(last_user.get_by_test_id("message-text")).to_have_text("second\nquestion")
    wait_status(page, "complete")


# Marks every visible, enabled button and says what a screen reader would call it.
MARK_BUTTONS = """() => {
    const name = (b) => {
        const by = b.getAttribute('aria-labelledby');
        if (by) return by.split(/\\s+/).map(id => document.getElementById(id)?.textContent || '').join(' ').trim();
        return (b.getAttribute('aria-label') || b.textContent || b.title || '').trim();
    };
    const buttons = [...document.querySelectorAll('button')].filter(b => !b.disabled && b.checkVisibility());
    return buttons.map((b, i) => {
        b.dataset.kbd = String(i);
        return { i, name: name(b), testid: b.dataset.testid || null, html: b.outerHTML.slice(0, 120) };
    });
}"""


def test_every_button_is_reached_by_tab_and_has_a_name(page, upstream):
    upstream.push(tokens=["Some code:\n\n", "```python\n", "print('hi')\n", "```\n", "\nDone."])
    send(page, "Code please")
    wait_status(page, "complete")
    expect(answer(page).locator("pre code.hljs")).to_have_count(1)
    page.get_by_test_id("composer").fill("x")  # Send is enabled: it counts too
    page.wait_for_load_state("networkidle")  # the sidebar and the model list have re-rendered
    buttons = page.evaluate(MARK_BUTTONS)
    testids = {b["testid"] for b in buttons}
    assert {"code-copy", "copy", "send", "new-conversation"} <= testids, testids
    unnamed = [b["html"] for b in buttons if not b["name"]]
    assert not unnamed, f"buttons with no accessible name: {unnamed}"
    page.evaluate("document.activeElement.blur()")
    reached = set()
    for _ in range(3 * len(buttons) + 30):
        page.keyboard.press("Tab")
        mark = page.evaluate("document.activeElement?.dataset?.kbd ?? null")
        if mark is not None:
            reached.add(int(mark))
    still_there = page.locator("[data-kbd]").count()
    assert still_there == len(buttons), "the page re-rendered buttons during the walk"
    missed = [b["html"] for b in buttons if b["i"] not in reached]
    assert not missed, f"buttons Tab never reaches: {missed}"
