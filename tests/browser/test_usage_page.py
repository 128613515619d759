"""The admin's usage page in Chromium: a staff member sees the figures as server-drawn SVG charts."""

import sqlite3
from pathlib import Path

from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.live import read_all

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".run" / "screenshots"


def test_staff_see_usage_charts_and_tables(browser, live, upstream):
    live.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser('uma', password={PASSWORD!r})",
    )
    client = live.client("uma")
    cid = client.new_conversation("usage figures")
    # Real answers through the scripted upstream: quick and slow first tokens, one upstream error.
    for i in range(10):
        if i == 7:
            upstream.push(tokens=6, error_after=3)
        else:
            upstream.push(tokens=5 + 3 * i, first_delay=0.02 * (i % 4), rate=400)
        with client.post_stream(cid, f"question {i}") as r:
            read_all(r)
    # Spread them over the last days, so the charts have a few days to draw.
    with sqlite3.connect(live.db_path) as db:
        db.execute(
            "UPDATE chat_message SET created_at = datetime(created_at, '-' || (id / 2 % 5) || ' days') "
            "WHERE conversation_id = ?",
            (cid,),
        )

    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.goto(f"{live.base_url}/admin/chat/usage/")
    page.get_by_label("Username").fill("uma")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_test_id("usage").wait_for()
    charts = page.locator("svg.usage-chart")
    expect(charts).to_have_count(4)
    for name in ("answers", "tokens"):
        assert page.locator(f"svg[data-chart={name}] rect.bar").count() >= 3, name
    for name in ("ttft", "tokens_per_s"):
        assert page.locator(f"svg[data-chart={name}] circle.point").count() >= 3, name
    assert page.locator("svg[data-chart=ttft] polyline.line").count() >= 1
    box = charts.first.bounding_box()
    assert box["width"] > 300 and box["height"] > 80  # drawn, not collapsed
    by_model = page.locator("table[data-table=by-model] tr[data-model=scripted-model] td[data-figure=answers]")
    assert sum(int(t) for t in by_model.all_inner_texts()) >= 10
    expect(page.locator("table[data-table=errors] tr[data-code]").first).to_be_visible()  # the upstream error
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "usage.png", full_page=True)
    # The admin's index links to it.
    page.goto(f"{live.base_url}/admin/")
    page.get_by_role("link", name="Usage").click()
    page.get_by_test_id("usage").wait_for()
    context.close()
