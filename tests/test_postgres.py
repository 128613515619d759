"""The app on PostgreSQL (DATABASE_URL), as deployed: answers stream, stop and are stored."""

import uuid

import psycopg
import pytest

from tests.conftest import LIVE_ENV, PASSWORD
from tests.live import Event, LiveApp, iter_sse, read_all, text_of

SERVER = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url():
    name = f"chatsite_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    yield f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_answers_stream_and_store_on_postgresql(pg_url, upstream, tmp_path):
    app = LiveApp(tmp_path, {"OPENAI_BASE_URL": upstream.base_url, "DATABASE_URL": pg_url, **LIVE_ENV}).start()
    try:
        app.create_user("gina", PASSWORD)
        client = app.client("gina", PASSWORD)
        cid = client.new_conversation()
        upstream.push(tokens=25, rate=200)
        with client.post_stream(cid, "on postgres") as r:
            events = read_all(r)
        assert events[-1].data["status"] == "complete"
        assert client.answer(cid)["content"] == text_of(events) == "".join(f"w{i} " for i in range(25))
        upstream.push(tokens=1000, rate=50)
        seen = []
        with client.post_stream(cid, "stop me") as r:
            for item in iter_sse(r.iter_lines()):
                seen += [item] if isinstance(item, Event) else []
                if len(seen) == 8:
                    assert client.cancel(seen[0].data["message_id"]).json() == {"status": "cancelled"}
        stored = client.answer(cid)
        assert (stored["status"], stored["content"]) == ("cancelled", text_of(seen))
        with psycopg.connect(pg_url) as db:  # really in PostgreSQL, not some other database
            count = db.execute("SELECT count(*) FROM chat_message").fetchone()[0]
        assert count == 4
        client.close()
    finally:
        app.stop()
