"""/healthz, /readyz and /metrics on a real daphne process (and on two workers behind nginx)."""

import socket
import time

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LIVE_ENV
from tests.live import PASSWORD, ApiClient, EventStream, LiveApp, free_port, read_all, text_of

TOKEN = "scrape-me-0123456789"


@pytest.fixture(scope="module")
def ops(upstream_server, tmp_path_factory):
    """An app of its own, so that its metrics count this module's answers and nothing else."""
    app = LiveApp(
        tmp_path_factory.mktemp("ops"),
        {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV, "CHAT_METRICS_TOKEN": TOKEN},
    )
    app.start()
    app.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; U = get_user_model(); "
        f"U.objects.create_user('olga', password={PASSWORD!r}); "
        f"U.objects.create_user('root', password={PASSWORD!r}, is_staff=True)",
    )
    yield app
    app.stop()


@pytest.fixture
def olga(ops, upstream) -> ApiClient:
    return ops.client("olga")


@pytest.fixture
def staff(ops, upstream) -> ApiClient:
    return ops.client("root")


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def scrape(base_url: str) -> dict[tuple[str, frozenset], float]:
    r = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    return samples(r.text)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def stream_answer(client: ApiClient, content: str = "hello") -> list:
    cid = client.new_conversation()
    with client.post_stream(cid, content) as r:
        assert r.status_code == 200
        return read_all(r)


# --- /healthz and /readyz -----------------------------------------------------------------------


def test_healthz_answers_without_login(ops):
    r = httpx.get(f"{ops.base_url}/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store"


def test_readyz_is_200_when_database_and_upstream_answer(ops):
    r = httpx.get(f"{ops.base_url}/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "upstream"}  # no REDIS_URL, no Redis check
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_naming_the_upstream_when_it_is_unreachable(upstream_server, tmp_path):
    env = {**LIVE_ENV, "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}  # nothing listens there
    with LiveApp(tmp_path, env) as app:
        r = httpx.get(f"{app.base_url}/readyz")
        healthz = httpx.get(f"{app.base_url}/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["failed"] == ["upstream"]
    assert body["checks"]["upstream"]["ok"] is False and body["checks"]["upstream"]["error"] == "unreachable"
    assert body["checks"]["database"]["ok"] is True
    assert body["error"]["code"] == "not_ready" and "upstream" in body["error"]["message"]
    assert healthz.status_code == 200  # alive, just not ready


def test_healthz_never_touches_the_database_and_readyz_checks_bounded_side_by_side(tmp_path, silent_port):
    """Database unreachable, upstream silent: the process is healthy; not ready, said within the timeout."""
    env = {
        **LIVE_ENV,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-dir' / 'db.sqlite3'}",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{silent_port}/v1",
        "CHAT_READY_TIMEOUT_S": "0.5",
    }
    with LiveApp(tmp_path, env, migrate=False) as app:
        assert httpx.get(f"{app.base_url}/healthz").status_code == 200
        started = time.monotonic()
        r = httpx.get(f"{app.base_url}/readyz")
        took = time.monotonic() - started
    assert r.status_code == 503
    body = r.json()
    assert body["failed"] == ["database", "upstream"]
    assert body["checks"]["database"]["error"] == "OperationalError"
    assert body["checks"]["upstream"]["error"] == "no answer within 0.5 s"
    assert took < 2.0  # one timeout, not a sum of them nor the client's 120 s


# --- /metrics: who may read it --------------------------------------------------------------------


def test_metrics_refuse_anonymous_wrong_tokens_and_non_staff(ops, olga):
    anonymous = httpx.get(f"{ops.base_url}/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{ops.base_url}/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_token"
    user = olga.http.get("/metrics")
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "forbidden"


def test_metrics_are_served_to_the_token_and_to_staff(ops, staff):
    for r in (
        httpx.get(f"{ops.base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}),
        staff.http.get("/metrics"),
    ):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=")
        found = samples(r.text)
        assert ("chat_upstream_retries_total", frozenset()) in found  # defined before anything retries
        assert value(found, "chat_answers_total", status="cancelled") >= 0


def test_metrics_without_a_configured_token_accept_no_bearer(live):
    """The shared app runs without CHAT_METRICS_TOKEN: an empty bearer is no key."""
    for header in ("Bearer", "Bearer x", f"Bearer {TOKEN}"):
        r = httpx.get(f"{live.base_url}/metrics", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "not_authenticated"


# --- /metrics: what it counts -----------------------------------------------------------------


def test_a_streamed_answer_is_counted_exactly(ops, olga, upstream):
    before = scrape(ops.base_url)
    upstream.push(tokens=25, rate=200, first_delay=0.1)
    events = stream_answer(olga)
    assert events[-1].data["status"] == "complete"
    after = scrape(ops.base_url)
    assert delta(before, after, "chat_time_to_first_token_seconds_count") == 1
    assert 0.1 <= delta(before, after, "chat_time_to_first_token_seconds_sum") < 5
    assert delta(before, after, "chat_time_to_first_token_seconds_bucket", le="0.05") == 0  # it took >= 0.1 s
    assert delta(before, after, "chat_time_to_first_token_seconds_bucket", le="+Inf") == 1
    # One gap between deliveries: tokens that arrive together go out as one event.
    deliveries = sum(e.event == "token" for e in events)
    assert delta(before, after, "chat_inter_token_gap_seconds_count") == deliveries - 1
    assert delta(before, after, "chat_tokens_total") == 25
    assert delta(before, after, "chat_answers_total", status="complete") == 1
    for status in ("cancelled", "interrupted", "error"):
        assert delta(before, after, "chat_answers_total", status=status) == 0
    assert value(after, "chat_active_streams") == 0


def test_active_streams_is_1_while_an_answer_streams_and_0_after(ops, olga, upstream):
    assert value(scrape(ops.base_url), "chat_active_streams") == 0
    upstream.push(tokens=30, rate=30)
    cid = olga.new_conversation()
    with olga.post_stream(cid, "take a second") as r:
        stream = EventStream(r)
        assert [e.event for e in stream.events(3)] == ["start", "token", "token"]
        assert value(scrape(ops.base_url), "chat_active_streams") == 1
        rest = stream.events()
    assert rest[-1].event == "done" and rest[-1].data["status"] == "complete"
    assert value(scrape(ops.base_url), "chat_active_streams") == 0


def test_a_cancel_counts_as_cancelled(ops, olga, upstream):
    before = scrape(ops.base_url)
    upstream.push(tokens=1000, rate=50)
    cid = olga.new_conversation()
    with olga.post_stream(cid, "long one") as r:
        stream = EventStream(r)
        first = stream.events(4)
        assert olga.cancel(first[0].data["message_id"]).json() == {"status": "cancelled"}
        rest = stream.events()
    after = scrape(ops.base_url)
    # One token event may carry several upstream chunks, so count the words the user saw.
    tokens = len(text_of(first + rest).split())
    assert delta(before, after, "chat_answers_total", status="cancelled") == 1
    assert delta(before, after, "chat_answers_total", status="complete") == 0
    assert delta(before, after, "chat_tokens_total") == tokens == olga.answer(cid)["stats"]["tokens"]
    assert delta(before, after, "chat_time_to_first_token_seconds_count") == 1
    assert value(after, "chat_active_streams") == 0


def test_an_upstream_error_is_counted_by_code(ops, olga, upstream):
    before = scrape(ops.base_url)
    for _ in range(3):  # the first try and two retries
        upstream.push(status=500)
    events = stream_answer(olga)
    assert events[-1].data["status"] == "error"
    after = scrape(ops.base_url)
    assert delta(before, after, "chat_upstream_retries_total") == 2
    assert delta(before, after, "chat_upstream_errors_total", code="upstream_error") == 1
    assert delta(before, after, "chat_answers_total", status="error") == 1
    assert delta(before, after, "chat_time_to_first_token_seconds_count") == 0
    assert delta(before, after, "chat_tokens_total") == 0


# --- several workers ----------------------------------------------------------------------------


def make_staff(cluster, username: str) -> None:
    cluster.create_user(username)
    with psycopg.connect(cluster.database_url, autocommit=True) as db:
        db.execute("UPDATE auth_user SET is_staff = true WHERE username = %s", (username,))


def test_metrics_sum_over_the_workers_behind_nginx(cluster, upstream):
    """Answers generated on each worker; a scrape of either, or through nginx, counts both."""
    make_staff(cluster, "ops-staff")
    tokens = gaps = 0
    for i, n in ((0, 7), (1, 11)):
        upstream.push(tokens=n)
        events = stream_answer(cluster.worker_client(i, "ops-staff"))
        assert events[-1].data["status"] == "complete" and text_of(events) == "".join(f"w{k} " for k in range(n))
        tokens += n
        gaps += sum(e.event == "token" for e in events) - 1  # tokens that come together go out as one event
    assert tokens == 18
    through_nginx = cluster.client("ops-staff")
    scrapes = [through_nginx.http.get("/metrics") for _ in range(2)]  # round-robin: one from each worker
    scrapes += [cluster.worker_client(i, "ops-staff").http.get("/metrics") for i in (0, 1)]
    for r in scrapes:
        assert r.status_code == 200, r.text
        found = samples(r.text)
        assert value(found, "chat_answers_total", status="complete") == 2
        assert value(found, "chat_tokens_total") == 18
        assert value(found, "chat_time_to_first_token_seconds_count") == 2
        assert value(found, "chat_inter_token_gap_seconds_count") == gaps
        assert value(found, "chat_active_streams") == 0
    ready = httpx.get(f"{cluster.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "upstream", "redis"}


def test_a_killed_workers_streams_leave_the_active_streams_gauge(cluster, upstream):
    """SIGKILL leaves the worker's gauge file behind; the next scrape drops it (its counters stay)."""
    make_staff(cluster, "ops-staff")
    on_a, on_b = (cluster.worker_client(i, "ops-staff") for i in (0, 1))
    upstream.push(tokens=1000, rate=50)
    cid = on_a.new_conversation()
    with on_a.post_stream(cid, "long one") as r:
        assert [e.event for e in EventStream(r).events(3)] == ["start", "token", "token"]
        assert value(samples(on_b.http.get("/metrics").text), "chat_active_streams") == 1
        cluster.kill(0)
    found = samples(on_b.http.get("/metrics").text)
    assert value(found, "chat_active_streams") == 0
    assert value(found, "chat_tokens_total") >= 2
