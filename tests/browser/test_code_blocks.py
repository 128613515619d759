"""Code blocks in the chat page: a Copy button that copies exactly the code, while the fence is still
open and after it closed; syntax highlighting that appears once the fence closes, and after a reload."""

from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import answer, send, wait_status, words

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"

CODE = 'def add(a, b):\n    return a + b  # <sum> & "more"\n\n\nprint(add(1, 2))'
HIGHLIGHTED = "[data-testid=message-text] pre code.hljs"


def clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def copy_code(page, block: int = 0) -> str:
    """Click a code block's Copy button; the clipboard once it says Copied."""
    button = answer(page).get_by_test_id("code-copy").nth(block)
    expect(button).to_have_attribute("aria-label", "Copy code")
    page.evaluate("navigator.clipboard.writeText('')")
    button.click()
    expect(button).to_have_text("Copied")
    expect(button).to_have_text("Copy")  # the feedback goes after a moment
    return clipboard(page)


MORE_LINES = [f"x{i} = add({i}, {i})\n" for i in range(300)]  # 3 lines a second: the fence stays open

# Clicks the first code block's Copy button and, in the same task (no frame in between), reads the
# code it shows: the open fence may grow right after.
CLICK_AND_READ = """() => {
    const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
    const el = all[all.length - 1];
    el.querySelector('[data-testid=code-copy]').click();
    return el.querySelector('[data-testid=message-text] pre code').textContent;
}"""


def conversation_id(page) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_copy_while_the_fence_is_open_copies_the_code_so_far(page, upstream, alice):
    head = ["Here:\n\n", "```python\n", *CODE.splitlines(keepends=True), "\n"]
    upstream.push(tokens=head + MORE_LINES, rate=3)
    send(page, "Add two numbers")
    code = answer(page).locator("[data-testid=message-text] pre code")
    expect(code).to_contain_text("x1 = add(1, 1)")
    shown = page.evaluate(CLICK_AND_READ)
    expect(answer(page).get_by_test_id("code-copy")).to_have_text("Copied")
    copied = clipboard(page)
    # Exactly the code on screen at the click: no language label, no trailing fence newline.
    assert copied == shown.removesuffix("\n")
    assert copied.startswith(CODE + "\nx0 = add(0, 0)\nx1 = add(1, 1)")
    assert (CODE + "\n" + "".join(MORE_LINES)).startswith(copied)
    assert "python" not in copied
    # Still open: shown as plain text, not highlighted.
    assert answer(page).get_attribute("data-status") == "streaming"
    expect(answer(page).locator(HIGHLIGHTED)).to_have_count(0)
    expect(answer(page).locator("[data-testid=message-text] pre span[class^=hljs]")).to_have_count(0)
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    # The answer ended, so the block is final: highlighted now, and it copies the whole code.
    expect(answer(page).locator(HIGHLIGHTED)).to_have_count(1)
    stored = alice.answer(conversation_id(page))["content"]
    assert copy_code(page) == stored.split("```python\n", 1)[1].removesuffix("\n")


def test_a_closed_fence_is_highlighted_while_the_answer_streams_and_after_a_reload(page, upstream):
    tokens = ["Here:\n\n", "```python\n", *CODE.splitlines(keepends=True), "\n```\n", "\n", "Then plain:\n\n"]
    tokens += ["```\n", "no <language> here\n", "```\n", "\n", "And more text "]
    upstream.push(tokens=tokens + words(300), rate=4)
    send(page, "Add two numbers")
    expect(answer(page).get_by_test_id("message-text")).to_contain_text("And more text")
    assert answer(page).get_attribute("data-status") == "streaming"
    highlighted = answer(page).locator(HIGHLIGHTED)
    expect(highlighted).to_have_count(1)
    expect(highlighted.locator("span.hljs-keyword").first).to_have_text("def")
    expect(highlighted.locator("span.hljs-comment")).to_have_text('# <sum> & "more"')
    # The block with no language stays plain; both copy exactly their code.
    expect(answer(page).locator("[data-testid=message-text] pre code")).to_have_count(2)
    assert copy_code(page, 0) == CODE
    assert copy_code(page, 1) == "no <language> here"
    assert answer(page).get_attribute("data-status") == "streaming"

    page.reload()  # re-attached to the running answer
    expect(answer(page).get_by_test_id("message-text")).to_contain_text("And more text")
    assert answer(page).get_attribute("data-status") == "streaming"
    expect(answer(page).locator(HIGHLIGHTED)).to_have_count(1)
    assert copy_code(page, 0) == CODE

    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")
    page.reload()  # the stored answer
    wait_status(page, "cancelled")
    highlighted = answer(page).locator(HIGHLIGHTED)
    expect(highlighted).to_have_count(1)
    expect(highlighted.locator("span.hljs-title")).to_have_text(["add"])
    assert copy_code(page, 0) == CODE
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    answer(page).locator(".code-block").first.screenshot(path=str(SCREENSHOTS / "code-block.png"))


def test_code_from_the_model_stays_text_when_highlighted(page, upstream):
    """Markup inside a highlighted block is shown, never run or parsed into elements."""
    code = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    upstream.push(tokens=["```html\n", code + "\n", "```\n"])
    send(page, "Some HTML")
    wait_status(page, "complete")
    block = answer(page).locator(HIGHLIGHTED)
    expect(block).to_have_count(1)
    expect(block.locator("span.hljs-tag").first).to_be_visible()
    assert block.locator("img, script").count() == 0
    assert block.text_content() == code + "\n"
    assert page.evaluate("window.__pwned") is None
    assert copy_code(page) == code
