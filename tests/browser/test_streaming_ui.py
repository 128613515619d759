"""The chat page while an answer streams: rendering, stop, copy, safety, reload, scroll, errors."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import answer, answer_text, norm, send, wait_status, wait_words, words

# Records the answer's visible length at every animation frame until it stops streaming.
SAMPLE_FRAMES = """() => new Promise(resolve => {
    const lengths = [];
    const tick = () => {
        const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
        const el = all[all.length - 1];
        if (el) lengths.push(el.querySelector('[data-testid=message-text]').textContent.length);
        if (el && el.dataset.status !== 'streaming') resolve(lengths);
        else requestAnimationFrame(tick);
    };
    tick();
})"""


def test_text_grows_over_several_frames(page, upstream):
    upstream.push(tokens=words(60), rate=60)
    send(page, "Count for me")
    lengths = page.evaluate(SAMPLE_FRAMES)
    distinct = sorted(set(lengths))
    assert len(distinct) >= 10, f"text arrived in too few steps: {distinct}"
    assert lengths == sorted(lengths), "the shown text never shrinks"
    assert norm(answer_text(page)) == norm("".join(words(60)))
    stats = page.evaluate("window.__chatStats")
    assert stats["commits"] >= 10


def test_dom_commits_at_most_once_per_frame(page, upstream):
    upstream.push(tokens=words(400), rate=800)
    frames = page.evaluate("""() => { window.__frames = 0;
        const f = () => { window.__frames++; requestAnimationFrame(f); }; requestAnimationFrame(f); }""")
    before = page.evaluate("window.__chatStats.commits")
    send(page, "Fast please")
    wait_status(page, "complete")
    commits = page.evaluate("window.__chatStats.commits") - before
    frames = page.evaluate("window.__frames")
    assert commits <= frames + 2, f"{commits} commits in {frames} frames"
    assert norm(answer_text(page)) == norm("".join(words(400)))


def test_caret_shows_only_while_streaming(page, upstream):
    upstream.push(tokens=words(80), rate=40)
    send(page, "Hello")
    wait_words(page, 3)
    expect(answer(page).locator(".caret")).to_have_count(1)
    wait_status(page, "complete")
    expect(answer(page).locator(".caret")).to_have_count(0)


def test_stop_aborts_and_keeps_the_partial_answer(page, upstream, alice):
    upstream.push(tokens=words(400), rate=25)
    send(page, "Write a lot")
    stop = page.get_by_test_id("stop")
    expect(stop).to_be_visible()
    wait_words(page, 5)
    stop.click()
    wait_status(page, "cancelled")
    expect(stop).to_be_hidden()
    record = upstream.last()
    upstream.wait_for(lambda: record.client_closed_at, what="the upstream connection to close")
    shown = norm(answer_text(page))
    assert 5 <= len(shown.split()) < 400
    conversation_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    stored = alice.answer(conversation_id)
    assert stored["status"] == "cancelled"
    assert norm(stored["content"]) == shown, "the screen ends exactly as the stored answer"
    expect(page.get_by_test_id("send")).to_be_disabled()  # empty composer
    page.get_by_test_id("composer").fill("next")
    expect(page.get_by_test_id("send")).to_be_enabled()


def test_copy_mid_answer_copies_what_is_shown(page, upstream):
    upstream.push(tokens=words(400), rate=25)
    send(page, "Stream slowly")
    wait_words(page, 8)
    shown = page.evaluate("""() => {
        const all = document.querySelectorAll('[data-testid=message][data-role=assistant]');
        const el = all[all.length - 1];
        el.querySelector('[data-testid=copy]').click();
        return el.querySelector('[data-testid=message-text]').textContent;  // same task: no frame between
    }""")
    expect(answer(page).get_by_test_id("copy")).to_have_text("Copied")
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert norm(clipboard) == norm(shown)
    assert len(norm(clipboard).split()) >= 8
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")


def test_copy_after_the_answer_copies_the_markdown_source(page, upstream):
    source = ["# Title\n\n", "Some **bold** ", "text.\n\n", "```js\n", "let a = 1;\n", "```\n"]
    upstream.push(tokens=source, rate=50)
    send(page, "Markdown please")
    wait_status(page, "complete")
    answer(page).get_by_test_id("copy").click()
    expect(answer(page).get_by_test_id("copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "".join(source)


XSS = [
    "Safe start. ",
    '<img src=x onerror="window.__xss=1">',
    " <script>window.__xss=2</script> ",
    '<svg onload="window.__xss=3"></svg> ',
    "[click me](javascript:window.__xss=4) ",
    '<a href="javascript:window.__xss=5">raw link</a> ',
    '<iframe srcdoc="<script>parent.__xss=6</script>"></iframe> ',
    '<div onclick="window.__xss=7" id="trap">press</div>',
    "\n\nSafe end. [ok](https://example.com/x)",
]


def test_html_and_script_in_model_output_stay_inert(page, upstream):
    upstream.push(tokens=XSS, rate=30)
    send(page, "Be evil")
    wait_status(page, "complete")
    text = answer(page).get_by_test_id("message-text")
    trap = text.get_by_text("press")
    expect(trap).to_be_visible()
    trap.click()  # its onclick was stripped
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert text.locator("script, iframe, svg, [onerror], [onload], [onclick]").count() == 0
    hrefs = text.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs)
    safe = text.locator("a[href='https://example.com/x']")
    expect(safe).to_have_attribute("rel", "noopener noreferrer")
    expect(safe).to_have_attribute("target", "_blank")
    expect(text).to_contain_text("Safe start.")
    expect(text).to_contain_text("Safe end.")


@pytest.fixture
def pixel_server():
    """A local HTTP server that records every request made to it (an exfiltration target)."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.requests = requests
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_images_in_model_output_do_not_load(page, upstream, pixel_server):
    base = pixel_server.url
    leak = f"{base}/leak.png?q=secret-token"
    upstream.push(
        tokens=[
            "Here is a picture:\n\n",
            f"![the secret]({leak}) and ",
            f"![]({base}/noalt.png)\n\n",
            f'<img src="{base}/raw.png" srcset="{base}/srcset.png 2x" alt="raw">\n\n',
            f'<video poster="{base}/poster.png" src="{base}/video.mp4"></video>\n\n',
            f'<table background="{base}/bg.png"><tr><td>cell</td></tr></table>\n\n',
            "The end.",
        ],
        rate=30,
    )
    send(page, "Show me an image")
    wait_status(page, "complete")
    text = answer(page).get_by_test_id("message-text")
    expect(text).to_contain_text("The end.")
    page.wait_for_timeout(800)  # time for any fetch to arrive
    assert pixel_server.requests == [], f"model output made the browser fetch: {pixel_server.requests}"
    assert text.locator("img, video, audio, source, picture, [background], [srcset], [poster]").count() == 0
    link = text.locator(f"a[href='{leak}']")
    expect(link).to_have_text("🖼 the secret")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")
    expect(text.locator(f"a[href='{base}/noalt.png']")).to_have_text(f"🖼 {base}/noalt.png")
    expect(text.locator(f"a[href='{base}/raw.png']")).to_have_text("🖼 raw")
    assert pixel_server.requests == []


def test_unclosed_code_fence_renders_as_code_mid_stream(page, upstream):
    head = ["Here you go:\n\n", "```python\n", "def f():\n", "    return '**not bold**'\n"]
    upstream.push(tokens=head + ["# line\n"] * 300, rate=25)
    send(page, "Code please")
    code = answer(page).locator("[data-testid=message-text] pre code")
    expect(code).to_contain_text("def f():")
    assert answer(page).get_attribute("data-status") == "streaming"
    expect(code).to_contain_text("return '**not bold**'")
    assert "```" not in answer_text(page)
    expect(answer(page).locator(".code-block .code-copy")).to_have_count(1)
    expect(answer(page).locator("[data-testid=message-text] strong")).to_have_count(0)
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")


def test_unclosed_emphasis_renders_cleanly_mid_stream(page, upstream):
    upstream.push(tokens=["Plain and ", "**very ", "bold "] + ["more "] * 300, rate=25)
    send(page, "Bold please")
    expect(answer(page).locator("[data-testid=message-text] strong")).to_contain_text("very bold")
    assert "**" not in answer_text(page)
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")


def test_reload_mid_answer_reattaches_without_loss_or_doubling(page, upstream, alice):
    upstream.push(tokens=words(150), rate=30)
    send(page, "Long one")
    wait_words(page, 15)
    page.reload()
    wait_words(page, 20)
    assert answer(page).get_attribute("data-status") == "streaming"
    expect(page.get_by_test_id("stop")).to_be_visible()
    wait_status(page, "complete", timeout=20_000)
    assert norm(answer_text(page)) == norm("".join(words(150)))
    conversation_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    assert norm(alice.answer(conversation_id)["content"]) == norm(answer_text(page))


def test_switching_away_keeps_the_answer_going(page, upstream, alice):
    upstream.push(tokens=words(80), rate=20)  # 4 s of answer
    send(page, "Slow answer")
    wait_words(page, 5)
    first_url = page.url
    conversation_id = int(first_url.rstrip("/").rsplit("/", 1)[1])
    record = upstream.last()
    page.get_by_test_id("new-conversation").click()
    expect(page).not_to_have_url(first_url)
    expect(page.locator("[data-testid=message]")).to_have_count(0)
    page.wait_for_timeout(2500)  # well past the live server's 1 s detach grace
    assert record.client_closed_at is None, "the server stopped the answer while we were away"
    page.locator(f"[data-testid=conversation-link][href='/c/{conversation_id}/']").click()
    expect(page).to_have_url(first_url)
    wait_status(page, "complete", timeout=20_000)
    assert norm(answer_text(page)) == norm("".join(words(80)))
    upstream.wait_for(lambda: record.completed, what="the upstream answer to complete")
    stored = alice.answer(conversation_id)
    assert stored["status"] == "complete"
    assert norm(stored["content"]) == norm("".join(words(80)))
    expect(page.get_by_test_id("stop")).to_be_hidden()


def test_scroll_follows_until_the_user_scrolls_up(page, upstream):
    upstream.push(tokens=[f"Line {i}.\n\n" for i in range(400)], rate=40)
    send(page, "Many lines")
    thread = page.locator("#thread")
    distance = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
    page.wait_for_function(
        "() => { const t = document.getElementById('thread'); return t.scrollHeight > t.clientHeight * 1.5; }"
    )
    page.wait_for_timeout(300)
    assert thread.evaluate(distance) < 60, "follows the answer"
    jump = page.get_by_test_id("jump-to-latest")
    expect(jump).to_be_hidden()
    thread.hover()
    page.mouse.wheel(0, -600)
    page.wait_for_timeout(200)
    top = thread.evaluate("el => el.scrollTop")
    page.wait_for_timeout(800)
    assert thread.evaluate("el => el.scrollTop") == top, "no longer pulled down"
    assert thread.evaluate(distance) > 200
    expect(jump).to_be_visible()
    jump.click()
    page.wait_for_timeout(300)
    assert thread.evaluate(distance) < 60
    expect(jump).to_be_hidden()
    page.get_by_test_id("stop").click()
    wait_status(page, "cancelled")


def test_error_event_shows_inline_keeps_partial_and_retries(page, upstream):
    upstream.push(tokens=words(50), rate=50, error_after=10)
    send(page, "Fail midway")
    wait_status(page, "error")
    assert norm(answer_text(page)) == norm("".join(words(10)))
    alert = answer(page).get_by_role("alert")
    expect(alert).to_be_visible()
    upstream.push(tokens=words(5), rate=50)
    alert.get_by_role("button", name="Retry").click()
    wait_status(page, "complete")
    assert norm(answer_text(page)) == norm("".join(words(5)))
    expect(page.locator("[data-testid=message][data-role=assistant]")).to_have_count(2)


def test_stats_show_under_the_answer(page, upstream):
    upstream.push(tokens=words(20), rate=40)
    send(page, "Stats")
    wait_status(page, "complete")
    stats = answer(page).locator(".message-stats")
    expect(stats).to_contain_text("to first token")
    expect(stats).to_contain_text("tok/s")
    expect(stats).to_contain_text("finished")


def test_hidden_tab_keeps_reading_and_catches_up_when_visible(page, upstream):
    upstream.push(tokens=words(60), rate=40)
    send(page, "Hidden")
    wait_words(page, 3)
    # Headless Chromium keeps firing rAF, so fake a hidden tab: the renderer must not schedule.
    page.evaluate("""() => { window.__hidden = true;
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => window.__hidden});
        document.dispatchEvent(new Event('visibilitychange')); }""")
    page.wait_for_timeout(50)
    frozen = page.evaluate("window.__chatStats.commits")
    shown = answer_text(page)
    page.wait_for_timeout(600)
    assert page.evaluate("window.__chatStats.commits") == frozen, "no commits while hidden"
    assert answer_text(page) == shown
    page.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
    assert len(answer_text(page)) > len(shown), "caught up at once on visibilitychange"
    wait_status(page, "complete")
    assert norm(answer_text(page)) == norm("".join(words(60)))


def test_screenshot_of_a_finished_conversation(page, upstream, artifacts):
    demo = [
        "Here is a **short** answer with a list and some code.\n\n",
        "## Steps\n\n",
        "1. Install it with `pip install chatsite`.\n",
        "2. Run `make run`.\n",
        "3. Read [the docs](https://example.com/docs).\n\n",
        "```python\n",
        "def greet(name: str) -> str:\n",
        '    return f"Hello, {name}!"\n',
        "```\n\n",
        "> Answers stream *token by token*.",
    ]
    upstream.push(tokens=demo, rate=40)
    send(page, "Show me what you can do")
    wait_status(page, "complete")
    page.screenshot(path=str(artifacts / "chat-finished-desktop.png"))
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)  # let colour transitions finish
    page.screenshot(path=str(artifacts / "chat-finished-dark.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => document.getElementById('sidebar').getBoundingClientRect().right <= 0")
    page.wait_for_timeout(100)
    page.screenshot(path=str(artifacts / "chat-finished-phone.png"))
    assert (artifacts / "chat-finished-desktop.png").stat().st_size > 10_000
