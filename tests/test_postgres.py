"""The app on PostgreSQL (DATABASE_URL), as deployed: answers stream, stop and are stored."""

import threading
import time
import uuid

import httpx
import psycopg
import pytest

from tests.conftest import LIVE_ENV
from tests.live import EventStream, LiveApp, read_all, text_of
from tests.upstream import Script

SERVER = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url():
    name = f"chatsite_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pg_app(pg_url, upstream, tmp_path, request):
    """The app on its own PostgreSQL database; DATABASE_POOL_SIZE from a `pool_size` parameter, if any."""
    env = {"OPENAI_BASE_URL": upstream.base_url, "DATABASE_URL": pg_url, **LIVE_ENV}
    if hasattr(request, "param"):
        env["DATABASE_POOL_SIZE"] = str(request.param)
    with LiveApp(tmp_path, env) as app:
        yield app


def test_answers_stream_and_store_on_postgresql(pg_app, pg_url, upstream):
    client = pg_app.new_client("gina")
    cid = client.new_conversation()
    upstream.push(tokens=25, rate=200)
    with client.post_stream(cid, "on postgres") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    assert client.answer(cid)["content"] == text_of(events) == "".join(f"w{i} " for i in range(25))
    upstream.push(tokens=1000, rate=50)
    with client.post_stream(cid, "stop me") as r:
        stream = EventStream(r)
        seen = stream.events(limit=8)
        assert client.cancel(seen[0].data["message_id"]).json() == {"status": "cancelled"}
        seen += stream.events()
    stored = client.answer(cid)
    assert (stored["status"], stored["content"]) == ("cancelled", text_of(seen))
    with psycopg.connect(pg_url) as db:  # really in PostgreSQL, not some other database
        count = db.execute("SELECT count(*) FROM chat_message").fetchone()[0]
    assert count == 4


def test_concurrent_posts_to_one_conversation_start_one_answer(pg_app, upstream):
    client = pg_app.new_client("ivan")
    cid = client.new_conversation()
    upstream.default = Script(tokens=20, rate=20)
    statuses: list[int] = []
    start = threading.Barrier(12)

    def post() -> None:
        with httpx.Client(base_url=pg_app.base_url, cookies=client.http.cookies, headers=client.http.headers) as c:
            c.get("/api/conversations/")  # connect and log in first, so the posts really race
            start.wait()
            with c.stream("POST", f"/api/conversations/{cid}/messages/", json={"content": "race"}) as r:
                statuses.append(r.status_code)
                r.read()

    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] + [409] * 11
    assert len(client.conversation(cid)["messages"]) == 2


def test_answers_survive_the_database_dropping_the_connection(pg_app, pg_url, upstream):
    client = pg_app.new_client("judy")
    cid = client.new_conversation()
    with client.post_stream(cid, "first") as r:
        read_all(r)
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:  # e.g. a database restart
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    for question in ("second", "third"):
        upstream.push(tokens=5)
        with client.post_stream(cid, question) as r:
            events = read_all(r)
        assert events[-1].data["status"] == "complete", events[-2:]
        stored = client.answer(cid)
        assert (stored["status"], stored["content"]) == ("complete", text_of(events))


@pytest.mark.parametrize("pg_app", [0, 3], indirect=True, ids=["no pool", "pool of 3"])
def test_streams_hold_no_database_connection_while_they_stream(pg_app, pg_url, upstream):
    """Twelve answers streaming at once use a few PostgreSQL connections, not twelve. With a pool
    of three, a stream that kept its connection would starve the fourth POST."""
    client = pg_app.new_client("kate")
    cids = [client.new_conversation() for _ in range(12)]
    upstream.default = Script(tokens=60, rate=20)
    started = threading.Barrier(13)
    results: list[str] = []

    def stream(cid: int) -> None:
        with client.post_stream(cid, "hold on") as r:
            events = EventStream(r)
            events.events(limit=2)
            started.wait()
            results.append(events.events()[-1].data["status"])

    threads = [threading.Thread(target=stream, args=(cid,)) for cid in cids]
    for t in threads:
        t.start()
    started.wait(20)
    with psycopg.connect(f"{SERVER}/postgres") as db:
        held = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (pg_url.rsplit("/", 1)[1],))
        connections = held.fetchone()[0]
    for t in threads:
        t.join(30)
    assert results == ["complete"] * 12
    assert connections <= 3, f"{connections} connections for 12 streams"


@pytest.mark.parametrize("pg_app", [3], indirect=True)
def test_a_burst_of_requests_waits_for_pooled_connections_instead_of_failing(pg_app, pg_url, upstream):
    """Twenty requests that each need the database while it is slow (here: a table locked for a
    second): the worker holds at most its pool of three connections, the others wait their turn,
    and every request is served. Without a bound each waiting request holds a connection of its
    own, and on a busy cluster PostgreSQL refuses clients past max_connections."""
    client = pg_app.new_client("liam")
    cid = client.new_conversation()
    name = pg_url.rsplit("/", 1)[1]
    statuses: list[int] = []

    def request() -> None:
        with httpx.Client(base_url=pg_app.base_url, cookies=client.http.cookies, headers=client.http.headers) as c:
            statuses.append(c.get(f"/api/conversations/{cid}/", timeout=30).status_code)

    def held() -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        with psycopg.connect(f"{SERVER}/postgres") as db:
            return db.execute(query, (name,)).fetchone()[0]

    threads = [threading.Thread(target=request) for _ in range(20)]
    with psycopg.connect(pg_url) as lock:
        lock.execute("LOCK TABLE chat_conversation IN ACCESS EXCLUSIVE MODE")
        for t in threads:
            t.start()
        time.sleep(1.0)  # every request has arrived and waits: on the lock, or for a connection
        during = held() - 1  # not the one holding the lock
    for t in threads:
        t.join(30)
    assert statuses == [200] * 20
    assert 1 <= during <= 3, f"{during} connections held by the worker"
