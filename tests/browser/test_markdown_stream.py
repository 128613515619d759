"""The page's Markdown view in real Chromium: streamed in random pieces, it shows at every frame
what a one-shot render of the same text shows, with marked, DOMPurify and the browser's own HTML
parser; a long open code fence grows by text appends, not by re-rendering."""

import json

from playwright.sync_api import expect

from tests.browser.helpers import answer, send, wait_status

# Imports the page's own markdown.js (next to the app.js the page loaded) and streams `doc` into a
# view in pieces from a seeded PRNG. Every `every` pieces, and at the end, the view's HTML (the
# caret is the message's, not the view's) is compared with a fresh view's one-shot render of the
# prefix. `slowClock`: a clock that advances 1 ms per reading, so the open-block render budget
# defers renders; a deferred frame must still show the one-shot render of the last rendered prefix.
STREAM = """async ({doc, seed, maxChunk, every, slowClock}) => {
    const app = document.querySelector('script[type=module][src*="app"]').src;
    const { createMarkdownView } = await import(new URL('markdown.js', app));
    let a = seed >>> 0;
    const rand = () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = Math.imul(a ^ (a >>> 15), a | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    let tick = 0;
    const now = slowClock ? () => ++tick : () => 0;
    // An open fence keeps its lines in display:block spans (layout stays bounded); the text and
    // everything else must be exactly the one-shot render's.
    const flat = (root) => {
        const copy = root.cloneNode(true);
        for (const lines of copy.querySelectorAll('span.md-code-lines')) lines.replaceWith(...lines.childNodes);
        copy.normalize();
        return copy.innerHTML;
    };
    const oneShotRoot = (text, final) => {
        const root = document.createElement('div');
        createMarkdownView(root).update(text, { final });
        return root;
    };
    const oneShot = (text, final) => flat(oneShotRoot(text, final));
    const root = document.createElement('div');
    const view = createMarkdownView(root, { now });
    const mismatches = [];
    let source = '', rendered = '', step = 0, deferred = 0;
    for (let i = 0; i < doc.length; ) {
        const piece = doc.slice(i, i + 1 + Math.floor(rand() * maxChunk));
        i += piece.length;
        source += piece;
        view.append(piece);
        const result = view.render();
        if (result.deferred) deferred += 1;
        else rendered = source;
        step += 1;
        if (step % every === 0 || i >= doc.length) {
            const want = oneShot(rendered, false);
            const got = flat(root);
            if (got !== want) mismatches.push({ at: rendered.length, got: got.slice(-300), want: want.slice(-300) });
        }
    }
    // What the reader sees of the open fence at the end: the same box, line for line.
    const lineBlocks = root.querySelectorAll('span.md-code-lines').length;
    const shown = (r) => {
        const host = document.createElement('div');
        host.className = 'message-text md';
        host.append(r);
        document.getElementById('message-list').append(host);
        const pre = host.querySelector('.md-live pre');
        const box = pre ? pre.getBoundingClientRect() : { width: -1, height: -1 };
        const size = [Math.round(box.width), Math.round(box.height)];
        host.remove();
        return size;
    };
    const geometry = { streamed: shown(root), oneShot: shown(oneShotRoot(rendered, false)) };
    view.render({ final: true });
    const finalWant = oneShot(doc, true);
    if (flat(root) !== finalWant || root.querySelector('span.md-code-lines')) {
        mismatches.push({ at: 'final', got: root.innerHTML.slice(-300), want: finalWant.slice(-300) });
    }
    return { mismatches: mismatches.slice(0, 3), count: mismatches.length, steps: step, deferred,
             stats: { ...view.stats }, lineBlocks, geometry };
}"""


def code_lines(n: int) -> str:
    """Code with everything a renderer might trip on: markup, entities, indents, blank lines."""
    samples = [
        "def f(x):",
        "    return '<b>**not bold**</b>' & x",
        "",
        "  \t# <script>alert(1)</script> `tick` ~~~",
        "\tvalue = [link](javascript:alert(1)) _under_ \u00a0é💡",
        "    ``",
        "",
        "",
    ]
    return "\n".join(samples[i % len(samples)] + ("" if i % 3 else f" # {i}") for i in range(n))


def paragraph(n: int) -> str:
    words = ["the", "**stream**", "renders", "`code`", "*each*", "token", "[a link](https://example.com)"]
    words += ["~~old~~", "x<y"]
    return " ".join(words[(i * 7) % len(words)] for i in range(n)) + "."


DOC = "\n\n".join(
    [
        "Intro with **bold** and a [link](https://example.com).",
        "```python\n" + code_lines(400) + "\n```",
        paragraph(900),
        "  ```js\n" + code_lines(150).replace("\n", "\n ") + "\n  ```",
        "~~~~\n" + code_lines(120) + "\n~~~~~",
        "- " + "\n- ".join(paragraph(12) for _ in range(40)),
        "| a | b |\n|---|---|\n" + "\n".join(f"| {i} | **{i * i}** |" for i in range(60)),
        "```\n" + code_lines(300),  # still open at the end
    ]
)


def stream(page, **options) -> dict:
    return page.evaluate(STREAM, {"doc": DOC, "every": 29, "slowClock": False, **options})


def test_random_pieces_render_as_one_shot_at_every_checked_frame(page):
    for seed, max_chunk, every in [(1, 4, 41), (2, 30, 13), (3, 300, 3)]:
        result = stream(page, seed=seed, maxChunk=max_chunk, every=every)
        assert result["count"] == 0, json.dumps(result["mismatches"], ensure_ascii=False, indent=1)
        assert result["deferred"] == 0


def test_an_open_fence_grows_by_appends_not_rebuilds(page):
    result = stream(page, seed=4, maxChunk=8)
    assert result["count"] == 0, json.dumps(result["mismatches"], ensure_ascii=False, indent=1)
    stats = result["stats"]
    # Most frames land inside the fences; each fence is rendered only a few times in full.
    assert stats["fenceAppends"] > result["steps"] / 3, stats
    assert stats["blockRenders"] < result["steps"] - stats["fenceAppends"] + 20, stats
    # The open fence at the end (about 10 kB) is laid out in several blocks of lines, and looks
    # the same as the one-shot render: same box, so the same lines.
    assert result["lineBlocks"] >= 3, result
    assert result["geometry"]["streamed"] == result["geometry"]["oneShot"], result["geometry"]
    assert result["geometry"]["streamed"][1] > 1000, result["geometry"]


def test_deferred_frames_show_an_earlier_prefix_exactly_and_the_end_is_whole(page):
    result = stream(page, seed=5, maxChunk=20, slowClock=True)
    assert result["deferred"] > 0, result
    assert result["count"] == 0, json.dumps(result["mismatches"], ensure_ascii=False, indent=1)


def test_a_streamed_fence_looks_the_same_after_a_reload(page, upstream):
    body = "```html\n" + code_lines(250) + "\n```\n\nAfter the code: **done**."
    upstream.push(tokens=[body[i : i + 5] for i in range(0, len(body), 5)], rate=2000)
    send(page, "Write some code")
    wait_status(page, "complete")
    html = "[data-testid=message][data-role=assistant] [data-testid=message-text]"
    highlighted = page.locator(f"{html} pre code.hljs")  # highlighting runs in a task of its own
    expect(highlighted).to_have_count(1)
    streamed = page.locator(html).last.inner_html()
    assert page.locator(f"{html} script").count() == 0
    assert page.locator(f"{html} pre b").count() == 0 and "<b>**not bold**</b>" in highlighted.text_content()
    page.reload()
    wait_status(page, "complete")
    expect(highlighted).to_have_count(1)
    assert answer(page).get_by_test_id("message-text").inner_html() == streamed
