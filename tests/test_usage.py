"""The admin's usage page, /admin/chat/usage/: figures per day and model, computed by the database."""

from datetime import UTC, datetime, time, timedelta
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import usage
from chat.models import Conversation, Message
from tests.cluster import create_database, drop_database
from tests.conftest import LIVE_ENV
from tests.live import PASSWORD, LiveApp

URL = "/admin/chat/usage/"

# days ago, model, status, ttft_ms, tokens, duration_ms, error_code
SEED = [
    (1, "m-a", "complete", 100, 10, 1100, ""),
    (1, "m-a", "complete", 200, 20, 1200, ""),
    (1, "m-a", "cancelled", 300, 30, 1300, ""),
    (1, "m-a", "error", 400, 40, 1400, "upstream_timeout"),
    (1, "m-a", "interrupted", None, 0, None, ""),  # ended before its first token
    (1, "m-a", "error", None, 0, 2000, "upstream_unavailable"),
    (1, "m-b", "complete", 50, 5, 550, ""),
    (2, "m-a", "complete", 10, 4, 1010, ""),
    (2, "m-a", "error", 20, 4, 1020, "upstream_timeout"),
    (40, "m-a", "complete", 999, 100, 2000, ""),  # outside the last 30 days
    (0, "m-a", "streaming", 5, 1, None, ""),  # not ended: not an answer yet
]


def seed(username: str = "carol", times: int = 1) -> None:
    """SEED's answers (`times` over), each after a question, on their days (UTC noon)."""
    from django.contrib.auth import get_user_model

    owner, _ = get_user_model().objects.get_or_create(username=username)
    today = timezone.now().astimezone(UTC).date()
    for copy in range(times):
        c = Conversation.objects.create(owner=owner, title=f"seed {copy}")
        for i, (ago, model, status, ttft, tokens, duration, code) in enumerate(SEED):
            at = datetime.combine(today - timedelta(days=ago), time(12), UTC) + timedelta(minutes=i)
            if ago == 0:
                at = timezone.now()
            q = Message.objects.create(conversation=c, role="user", content="q", tokens=99, ttft_ms=1)
            a = Message.objects.create(
                conversation=c, role="assistant", content="a", model=model, status=status, ttft_ms=ttft,
                tokens=tokens, duration_ms=duration, error_code=code,
            )  # fmt: skip
            Message.objects.filter(pk__in=[q.pk, a.pk]).update(created_at=at)


def day(ago: int) -> str:
    return (timezone.now().astimezone(UTC).date() - timedelta(days=ago)).isoformat()


# What the page must show for SEED (times 1 or 3: with each value thrice, p95 moves up to the top value).
def expected_by_model(times: int = 1) -> dict:
    n = times
    p95 = {1: ("385", "19.5"), 3: ("400", "20")}[times]
    return {
        (day(1), "m-a"): {
            "answers": f"{6 * n}", "tokens": f"{100 * n}", "ttft_p50": "250", "ttft_p95": p95[0],
            "tokens_per_s": "25.0", "complete": f"{2 * n}", "cancelled": f"{n}", "interrupted": f"{n}",
            "error": f"{2 * n}", "errors": f"upstream_timeout: {n}, upstream_unavailable: {n}",
        },
        (day(1), "m-b"): {
            "answers": f"{n}", "tokens": f"{5 * n}", "ttft_p50": "50", "ttft_p95": "50", "tokens_per_s": "10.0",
            "complete": f"{n}", "cancelled": "0", "interrupted": "0", "error": "0", "errors": "",
        },
        (day(2), "m-a"): {
            "answers": f"{2 * n}", "tokens": f"{8 * n}", "ttft_p50": "15", "ttft_p95": p95[1],
            "tokens_per_s": "4.0", "complete": f"{n}", "cancelled": "0", "interrupted": "0", "error": f"{n}",
            "errors": f"upstream_timeout: {n}",
        },
    }  # fmt: skip


def expected_by_day() -> dict:
    """Computed when asked, not at import: a run that crosses midnight UTC must still agree."""
    return {
        # Percentiles over both models' answers, not from the per-model figures: 50..400 ms.
        (day(1), ""): {"answers": "7", "tokens": "105", "ttft_p50": "200", "ttft_p95": "380", "tokens_per_s": "23.3"},
        (day(2), ""): {"answers": "2", "tokens": "8", "ttft_p50": "15", "ttft_p95": "19.5", "tokens_per_s": "4.0"},
    }


class Tables(HTMLParser):
    """{table name: {(data-day, data-model): {data-figure: cell text}}} from the page."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = self._row = self._figure = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self._table = self.tables.setdefault(a["data-table"], {})
        elif tag == "tr" and "data-day" in a and self._table is not None:
            self._row = self._table.setdefault((a["data-day"], a["data-model"]), {})
        elif tag == "td" and "data-figure" in a and self._row is not None:
            self._figure = a["data-figure"]
            self._row[self._figure] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._figure = None
        elif tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._figure:
            self._row[self._figure] += data.strip()


def check_figures(html: str, times: int = 1) -> None:
    tables = Tables(html).tables
    assert tables["by-model"] == expected_by_model(times)
    expected = expected_by_day()
    by_day = {key: {k: row[k] for k in expected[key]} for key, row in tables["by-day"].items()}
    if times == 1:
        assert by_day == expected
    assert f'<tr data-code="upstream_timeout"><td>upstream_timeout</td><td class="num">{2 * times}</td>' in html
    assert f'<tr data-code="upstream_unavailable"><td>upstream_unavailable</td><td class="num">{times}</td>' in html


def charts_in(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<svg class="usage-chart" data-chart="')[1:]]


@pytest.mark.django_db
def test_figures_per_day_and_model_on_sqlite(admin_client):
    seed()
    r = admin_client.get(URL)
    assert r.status_code == 200
    html = r.content.decode()
    check_figures(html)
    assert charts_in(html) == ["answers", "tokens", "ttft", "tokens_per_s"]
    assert "<script" not in html.split('id="content-main"')[1]  # charts drawn by the server, no JS


@pytest.mark.django_db
def test_range_and_model_filter(admin_client):
    seed()
    wider = Tables(admin_client.get(URL, {"days": "60"}).content.decode()).tables["by-model"]
    assert wider[(day(40), "m-a")]["answers"] == "1" and len(wider) == 4
    narrow = Tables(admin_client.get(URL, {"days": "1"}).content.decode()).tables["by-model"]
    assert narrow == {}  # today's only answer is still streaming
    page = admin_client.get(URL, {"model": "m-b"}).content.decode()
    tables = Tables(page).tables
    assert list(tables["by-model"]) == [(day(1), "m-b")]
    assert tables["by-day"][(day(1), "")]["ttft_p50"] == "50"
    assert '<option value="m-a">' in page and '<option value="m-b" selected>' in page


@pytest.mark.django_db
def test_non_staff_are_sent_to_the_login_page(client, user):
    seed()
    r = client.get(URL)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/?next=/admin/chat/usage/")
    client.force_login(user)
    r = client.get(URL)
    assert r.status_code == 302 and r["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_query_count_does_not_grow_with_messages(admin_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            html = admin_client.get(URL).content.decode()
        return len(captured), html

    seed()
    once, _ = queries()
    seed(times=2)  # now three of each
    thrice, html = queries()
    assert Tables(html).tables["by-model"] == expected_by_model(3)
    assert thrice == once <= 12


@pytest.mark.django_db
def test_window_percentiles_match_percentile_cont_definition():
    """The SQLite fallback interpolates as percentile_cont does, on sizes with and without a remainder."""
    user = Conversation._meta.get_field("owner").related_model.objects.create(username="pat")
    c = Conversation.objects.create(owner=user)
    for n, model in [(1, "one"), (2, "two"), (7, "seven"), (20, "twenty"), (21, "twenty-one")]:
        for v in range(n):
            Message.objects.create(conversation=c, role="assistant", model=model, ttft_ms=(v * 37) % 101 + v)
    got = usage.window_percentiles(Message.objects.all(), ["model"])
    for (model,), figures in got.items():
        values = sorted(Message.objects.filter(model=model).values_list("ttft_ms", flat=True))
        for name, p in usage.PERCENTILES.items():
            h = (len(values) - 1) * p
            low = int(h)
            want = values[low] + (h - low) * (values[min(low + 1, len(values) - 1)] - values[low])
            assert figures[name] == pytest.approx(want), (model, name)
    assert len(got) == 5


@pytest.fixture
def pg_app(upstream, tmp_path):
    """The app on a PostgreSQL database of its own (a copy of the migrated template)."""
    url = create_database()
    try:
        env = {"OPENAI_BASE_URL": upstream.base_url, "DATABASE_URL": url, **LIVE_ENV}
        with LiveApp(tmp_path, env, migrate=False) as app:
            yield app
    finally:
        drop_database(url)


def test_figures_on_postgresql_with_percentile_cont(pg_app):
    pg_app.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from tests.test_usage import seed; seed(); "
        f"get_user_model().objects.create_superuser('root', password={PASSWORD!r})",
    )
    staff = pg_app.client("root")
    html = staff.http.get(URL).text
    check_figures(html)
    assert charts_in(html) == ["answers", "tokens", "ttft", "tokens_per_s"]
    assert staff.http.get(URL, params={"days": "60"}).text.count('data-model="m-a"') == 3
