"""Page benchmark: 20,000 tokens at 1,000 tokens/s streamed into the chat page in Chromium.

Not a test. Prints DOM commits per second (goal <= 60: one per animation frame at most), the
main-thread time spent in commits (total and longest), the longest main-thread task (goal < 50
ms, from PerformanceObserver 'longtask'), and whether the final text equals the tokens sent,
byte for byte (read back through the Copy button).

    .venv/bin/python bench/page_bench.py [--tokens 20000] [--rate 1000] [--answer mixed|fence]

--answer mixed (the default) is a realistic answer: paragraphs, lists, a short code block now and
then. --answer fence is one code fence that grows for the whole answer (about 6 characters a
token, so 20,000 tokens make a 120 kB fence): the case where re-rendering the open block every
frame would cost O(n^2) over the answer.

Runs the app under daphne against the scripted upstream (tests/live.py, tests/upstream.py),
each with its own port and a temporary database. Exits 1 only if the final text is wrong.
"""

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser.chromium import launch_chromium, login  # noqa: E402
from tests.live import LiveApp  # noqa: E402
from tests.upstream import ScriptedUpstream  # noqa: E402

USER, PASSWORD = "bench", "bench-password-123"

OBSERVE_LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({type: 'longtask', buffered: true});
"""

STATUS = "document.querySelector('[data-testid=message][data-role=assistant]')?.dataset.status"


def answer_tokens(count: int) -> list[str]:
    """A realistic Markdown answer: paragraphs, a list and a code block now and then."""
    vocabulary = "the stream renders each token once per frame while the parser keeps up".split()
    tokens: list[str] = []
    paragraph = 0
    while len(tokens) < count:
        paragraph += 1
        if paragraph % 7 == 0:
            tokens += ["```python\n"] + [f"value_{i} = compute({i})\n" for i in range(12)] + ["```\n\n"]
        elif paragraph % 5 == 0:
            tokens += [f"- item {i} with **bold** text\n" for i in range(6)] + ["\n"]
        else:
            tokens += [f"{vocabulary[i % len(vocabulary)]} " for i in range(70)] + ["\n\n"]
    return tokens[:count]


def fence_tokens(count: int) -> list[str]:
    """One long Python fence, opened at once and never closed, in pieces of about 6 characters."""
    tokens = ["Here is the whole file:\n\n", "```python\n"]
    line = 0
    while len(tokens) < count:
        text = f"    value_{line} = compute({line}, 'x' * {line % 7})  # <step> & more\n"
        tokens += [text[i : i + 6] for i in range(0, len(text), 6)]
        line += 1
    return tokens[:count]


ANSWERS = {"mixed": answer_tokens, "fence": fence_tokens}


def run(count: int, rate: float, answer: str = "mixed") -> int:
    tokens = ANSWERS[answer](count)
    expected = "".join(tokens)
    upstream = ScriptedUpstream().start()
    upstream.default.tokens = tokens
    upstream.default.rate = rate
    with tempfile.TemporaryDirectory() as workdir:
        app = LiveApp(Path(workdir), {"OPENAI_BASE_URL": upstream.base_url, "CHAT_MODEL": "bench"})
        app.start()
        try:
            app.create_user(USER, PASSWORD)
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                context = browser.new_context(viewport={"width": 1200, "height": 800})
                context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.base_url)
                context.add_init_script(OBSERVE_LONG_TASKS)
                page = context.new_page()
                login(page, app.base_url, USER, PASSWORD)
                result = measure(page, expected, count / rate)
                browser.close()
        finally:
            app.stop()
            upstream.stop()
    return report(result, count, rate, answer)


def measure(page, expected: str, nominal_s: float) -> dict:
    composer = page.get_by_test_id("composer")
    composer.fill("Benchmark: write a long answer.")
    page.evaluate("() => { window.__longTasks.length = 0; }")
    composer.press("Enter")
    page.wait_for_function(f"() => {STATUS} === 'streaming' && window.__chatStats.tokens > 0", polling=5)
    # Start the clock at a commit, so the window holds whole commit intervals.
    start = page.evaluate("""() => new Promise(resolve => {
        const s = window.__chatStats, seen = s.frameCommits;
        const poll = () => s.frameCommits > seen
            ? resolve({frames: s.frameCommits, commits: s.commits, at: s.lastFrameCommitAt})
            : setTimeout(poll, 1);
        poll();
    })""")
    page.wait_for_function(f"() => {STATUS} && {STATUS} !== 'streaming'", timeout=(nominal_s * 3 + 30) * 1000)
    end = page.evaluate(
        "(s => ({frames: s.frameCommits, commits: s.commits, at: s.lastFrameCommitAt,"
        " commit_ms: s.commitMsTotal, commit_max_ms: s.commitMsMax}))(window.__chatStats)"
    )
    elapsed = (end["at"] - start["at"]) / 1000
    commits = end["frames"] - start["frames"]  # per animation frame, timed in frame time
    forced = (end["commits"] - start["commits"]) - commits  # outside frames: the final render
    long_tasks = page.evaluate("() => window.__longTasks")
    # Prove the observer works here: an 80 ms busy loop must show up as a long task.
    page.evaluate("() => { setTimeout(() => { const t = performance.now(); while (performance.now() - t < 80); }); }")
    page.wait_for_timeout(300)
    observer_ok = len(page.evaluate("() => window.__longTasks")) > len(long_tasks)
    page.locator("[data-testid=message][data-role=assistant] [data-testid=copy]").click()
    page.wait_for_timeout(200)
    copied = page.evaluate("() => navigator.clipboard.readText()")
    return {
        "status": page.evaluate(f"() => {STATUS}"),
        "elapsed_s": elapsed,
        "commits": commits,
        "forced": forced,
        "commit_ms": end["commit_ms"],
        "commit_max_ms": end["commit_max_ms"],
        "long_tasks": long_tasks,
        "observer_ok": observer_ok,
        "exact": copied == expected,
        "received": len(copied),
        "expected": len(expected),
    }


def report(r: dict, count: int, rate: float, answer: str) -> int:
    per_s = r["commits"] / r["elapsed_s"] if r["elapsed_s"] else 0.0
    longest = max(r["long_tasks"], default=0.0)
    print(
        f"answer: {answer}; tokens: {count} at {rate:g}/s; streamed in {r['elapsed_s']:.1f} s;"
        f" final status {r['status']}"
    )
    print(
        f"DOM commits: {r['commits']} in frames = {per_s:.2f}/s (goal <= 60)  {'OK' if per_s <= 60 else 'OVER'};"
        f" plus {r['forced']} outside frames (the final render)"
    )
    print(f"time in commits: {r['commit_ms']:.0f} ms in all, longest commit {r['commit_max_ms']:.1f} ms")
    print(
        f"longest task: {longest:.0f} ms over {len(r['long_tasks'])} long tasks (goal < 50 ms)  "
        f"{'OK' if longest < 50 else 'OVER'}"
        + ("" if r["observer_ok"] else "  (WARNING: the longtask observer saw nothing: numbers unreliable)")
    )
    print(f"final text exact: {r['exact']} ({r['received']} of {r['expected']} characters)")
    return 0 if r["exact"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--answer", choices=sorted(ANSWERS), default="mixed")
    args = parser.parse_args()
    sys.exit(run(args.tokens, args.rate, args.answer))


if __name__ == "__main__":
    main()
