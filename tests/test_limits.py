"""Limits: per-user concurrency and rate, per-process streams; refused before anything is stored."""

import sqlite3

import httpx
import pytest

from tests.cluster import Cluster
from tests.conftest import LIVE_ENV
from tests.live import EventStream, LiveApp, read_all, text_of

LIMITS = {"CHAT_USER_CONCURRENCY": "2", "CHAT_USER_RATE_PER_MIN": "4", "CHAT_MAX_STREAMS": "3"}


@pytest.fixture(scope="module")
def limited(upstream_server, tmp_path_factory):
    env = {"OPENAI_BASE_URL": upstream_server.base_url, **LIVE_ENV, **LIMITS}
    with LiveApp(tmp_path_factory.mktemp("limited"), env) as app:
        yield app


def post(client, cid: int, content: str = "hello") -> httpx.Response:
    return client.http.post(f"/api/conversations/{cid}/messages/", json={"content": content})


def messages_in(app: LiveApp, cid: int) -> int:
    with sqlite3.connect(app.db_path) as db:
        return db.execute("SELECT count(*) FROM chat_message WHERE conversation_id = ?", (cid,)).fetchone()[0]


def refusal(r: httpx.Response) -> tuple[int, str, int]:
    """(status, code, Retry-After) of a refused post, checking the body and the header agree."""
    error = r.json()["error"]
    assert error["message"] and int(r.headers["Retry-After"]) == error["retry_after"] >= 1
    return r.status_code, error["code"], error["retry_after"]


def test_a_user_with_two_answers_streaming_is_refused_a_third_until_one_ends(limited, upstream):
    upstream.name("long", tokens=1000, rate=50)
    ann = limited.new_client("ann")
    first, second, third = (ann.new_conversation() for _ in range(3))
    with ann.post_stream(first, "one [script:long]") as r1, ann.post_stream(second, "two [script:long]") as r2:
        answer_id = read_all(r1, limit=1)[0].data["message_id"]
        read_all(r2, limit=1)
        refused = post(ann, third)
        assert refusal(refused)[:2] == (429, "too_many_answers")
        assert messages_in(limited, third) == 0  # nothing half-created
        assert ann.cancel(answer_id).json() == {"status": "cancelled"}
        upstream.push(tokens=3)
        with ann.post_stream(third, "now there is room") as r3:
            assert text_of(read_all(r3)) == "w0 w1 w2 "


def test_a_process_at_its_stream_limit_answers_503_and_other_users_are_not_charged(limited, upstream):
    upstream.name("long", tokens=1000, rate=50)
    users = [limited.new_client(name) for name in ("ben", "bea", "bob3")]
    cids = [u.new_conversation() for u in users]
    with users[0].post_stream(cids[0], "[script:long]") as r1, users[1].post_stream(cids[1], "[script:long]") as r2:
        with users[1].post_stream(users[1].new_conversation(), "[script:long]") as r3:
            ids = [read_all(r, limit=1)[0].data["message_id"] for r in (r1, r2, r3)]
            refused = post(users[2], cids[2])
            assert refusal(refused)[:2] == (503, "server_busy")
            assert messages_in(limited, cids[2]) == 0
            for user, answer_id in zip((users[0], users[1], users[1]), ids, strict=True):
                user.cancel(answer_id)
    upstream.push(tokens=2)
    with users[2].post_stream(cids[2], "my turn") as r:
        assert read_all(r)[-1].data["status"] == "complete"


def test_messages_per_minute_are_limited_and_refused_posts_do_not_count(limited, upstream):
    cat = limited.new_client("cat")
    busy, free = cat.new_conversation(), cat.new_conversation()
    upstream.name("long", tokens=1000, rate=50)
    with cat.post_stream(busy, "[script:long]") as r:  # 1 of 4
        answer_id = read_all(r, limit=1)[0].data["message_id"]
        for _ in range(3):  # refused while the answer streams: they must not use up the minute
            assert post(cat, busy).status_code == 409
        cat.cancel(answer_id)
    upstream.default.tokens = 2
    for _ in range(3):  # 2, 3 and 4 of 4
        with cat.post_stream(free, "quick") as r:
            assert read_all(r)[-1].data["status"] == "complete"
    before = messages_in(limited, free)
    status, code, retry_after = refusal(post(cat, free))
    assert (status, code) == (429, "rate_limited") and retry_after <= 60
    assert messages_in(limited, free) == before
    other = limited.new_client("cid")  # the limit is per user
    with other.post_stream(other.new_conversation(), "hi") as r:
        assert read_all(r)[-1].data["status"] == "complete"


def test_limits_hold_across_workers_through_redis(upstream, tmp_path):
    env = {**LIVE_ENV, "CHAT_USER_CONCURRENCY": "1", "CHAT_USER_RATE_PER_MIN": "3"}
    with Cluster(tmp_path, upstream.base_url, env) as cluster:
        cluster.create_user("dora")
        on = [cluster.worker_client(i, "dora") for i in range(2)]
        a, b = on[0].new_conversation(), on[0].new_conversation()
        upstream.name("long", tokens=1000, rate=50)
        with on[0].post_stream(a, "[script:long]") as r:  # 1 of 3, on worker 0
            stream = EventStream(r)
            answer_id = stream.events(limit=1)[0].data["message_id"]
            assert refusal(post(on[1], b))[:2] == (429, "too_many_answers")  # seen from worker 1
            on[1].cancel(answer_id)
            stream.events()
        upstream.default.tokens = 2
        for client in on:  # 2 and 3 of 3, one on each worker
            with client.post_stream(b, "quick") as r:
                assert read_all(r)[-1].data["status"] == "complete"
        for client in on:
            assert refusal(post(client, b))[:2] == (429, "rate_limited")
