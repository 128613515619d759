"""Several workers sharing answers through Redis: two daphne processes, PostgreSQL, nginx.

Worker A is `cluster.workers[0]`, worker B `cluster.workers[1]`; clients talk to one of them
directly when a test needs to say which, and through nginx otherwise.
"""

import json
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.cluster import Cluster
from tests.conftest import LIVE_ENV
from tests.live import ApiClient, EventStream, read_all, text_of

# Short timings so that deaths and leases show within a test's patience.
CLUSTER_ENV = {
    **LIVE_ENV,
    "CHAT_HEARTBEAT_S": "0.5",
    "CHAT_WORKER_TTL_S": "5",
    "CHAT_LEASE_S": "2",
    "CHAT_SWEEP_S": "2",
}
A, B = 0, 1


@pytest.fixture(scope="module")
def cluster(upstream_server, tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), upstream_server.base_url, workers=2, env=CLUSTER_ENV) as c:
        yield c


_users = iter(range(10_000))


@pytest.fixture
def user(cluster, upstream) -> str:
    name = f"user{next(_users)}"
    cluster.create_user(name, "correct-horse-battery")
    return name


def on(cluster: Cluster, worker: int, user: str) -> ApiClient:
    return cluster.worker_client(worker, user)


def socket_on(cluster: Cluster, worker: int, client: ApiClient, conversation_id: int, origin: str | None = None):
    base = cluster.workers[worker].base_url
    return ws_connect(
        base.replace("http://", "ws://") + f"/ws/conversations/{conversation_id}/",
        origin=origin or base,
        additional_headers={"Cookie": f"sessionid={client.http.cookies['sessionid']}"},
        open_timeout=5,
    )


def frames(socket, until, timeout: float = 10.0) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(json.loads(socket.recv(timeout=deadline - time.monotonic())))
        if until(seen[-1]):
            return seen
    raise AssertionError(f"timed out; frames so far: {seen}")


# --- cancel from another worker ----------------------------------------------------------------


def test_an_http_cancel_on_b_stops_the_generation_on_a_at_once(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    upstream.push(tokens=1000, rate=50)
    with a.post_stream(cid, "long answer") as r:
        stream = EventStream(r)
        seen = stream.events(limit=10)
        answer_id = seen[0].data["message_id"]
        cancelled_at = time.monotonic()
        assert b.cancel(answer_id).json() == {"status": "cancelled"}
        seen += stream.events()
    closed_at = upstream.last().client_closed_at
    assert closed_at is not None and closed_at - cancelled_at < 0.1
    assert seen[-1].data["status"] == "cancelled"
    stored = b.answer(cid)
    assert (stored["status"], stored["content"]) == ("cancelled", text_of(seen))
    assert b.cancel(answer_id).json() == {"status": "cancelled"}  # idempotent


def test_a_websocket_cancel_on_b_stops_the_generation_on_a_at_once(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    upstream.push(tokens=1000, rate=50)
    with socket_on(cluster, B, b, cid) as socket, a.post_stream(cid, "long answer") as r:
        stream = EventStream(r)
        seen = stream.events(limit=10)
        answer_id = seen[0].data["message_id"]
        cancelled_at = time.monotonic()
        socket.send(json.dumps({"type": "cancel", "message_id": answer_id}))
        seen += stream.events()
        states = frames(socket, lambda f: f.get("state") == "cancelled")
    closed_at = upstream.last().client_closed_at
    assert closed_at is not None and closed_at - cancelled_at < 0.1
    assert seen[-1].data["status"] == "cancelled"
    assert [f["state"] for f in states if f["type"] == "generation"] == ["started", "cancelled"]
    assert b.answer(cid)["content"] == text_of(seen)


# --- resume and follow on another worker ---------------------------------------------------------


def test_a_stream_started_on_a_resumes_on_b_without_losing_or_doubling(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    upstream.push(tokens=80, rate=100)
    with a.post_stream(cid, "resume me elsewhere") as r:
        first = read_all(r, limit=15)  # then the connection drops
    with b.resume_stream(first[0].data["message_id"], first[-1].id) as r:
        rest = read_all(r)
    events = first + rest
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == "".join(f"w{i} " for i in range(80)) == b.answer(cid)["content"]
    with b.resume_stream(first[0].data["message_id"], 0) as r:  # after the end: the same events again
        again = read_all(r)
    assert [(e.id, e.event, e.data) for e in again] == [(e.id, e.event, e.data) for e in events]


def test_a_follower_on_b_alone_keeps_as_answer_alive_and_when_it_leaves_a_abandons_it(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    upstream.push(tokens=1000, rate=20)
    with a.post_stream(cid, "keep me going") as r:
        answer_id = read_all(r, limit=1)[0].data["message_id"]
        with b.resume_stream(answer_id, 1) as follow:
            stream = EventStream(follow)
            stream.events(limit=1)
            r.close()  # A's own follower leaves; B's stays
            time.sleep(3.0)  # three grace periods (1 s each)
            assert upstream.last().client_closed_at is None, "abandoned although B follows"
            seen = stream.events(limit=5)
            assert len(seen) == 5
    left_at = time.monotonic()
    record = upstream.wait_for(lambda: upstream.last().client_closed_at and upstream.last(), 10, "abandonment")
    assert record.client_closed_at - left_at < 3.0  # the grace period (1 s) and a little
    stored = b.answer(cid)
    assert stored["status"] == "interrupted"


def test_a_new_worker_leaves_the_running_answers_of_others_alone(cluster, user, upstream):
    a = on(cluster, A, user)
    cid = a.new_conversation()
    upstream.push(tokens=120, rate=40)
    with a.post_stream(cid, "survive a deploy of B") as r:
        stream = EventStream(r)
        seen = stream.events(limit=5)
        cluster.restart(B)  # its start-up recovery and sweeper see A's answer streaming
        time.sleep(2.5)  # a sweep or two
        seen += stream.events()
    assert seen[-1].data["status"] == "complete"
    b = on(cluster, B, user)
    assert b.answer(cid)["content"] == text_of(seen) == "".join(f"w{i} " for i in range(120))


def test_sigkill_of_a_ends_the_follower_on_b_interrupted_and_the_conversation_goes_on(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    upstream.push(tokens=1000, rate=40)
    try:
        with a.post_stream(cid, "crash while b watches") as r:
            answer_id = read_all(r, limit=1)[0].data["message_id"]
            with b.resume_stream(answer_id, 0) as follow:
                stream = EventStream(follow)
                seen = stream.events(limit=30)  # ~0.7 s in: checkpoints (0.2 s) have happened
                cluster.kill(A)
                killed_at = time.monotonic()
                seen += stream.events()
                learned_after = time.monotonic() - killed_at
        assert seen[-1].event == "done" and seen[-1].data["status"] == "interrupted"
        assert learned_after < 10
        stored = b.answer(cid)
        assert stored["status"] == "interrupted" and stored["content"]
        assert text_of(seen).startswith(stored["content"])
        upstream.push(tokens=5)
        with b.post_stream(cid, "and now?") as r:
            events = read_all(r)
        assert events[-1].data["status"] == "complete"
    finally:
        cluster.restart(A)


# --- the WebSocket across workers ----------------------------------------------------------------


def test_typing_and_state_frames_cross_workers(cluster, user, upstream):
    a, b = on(cluster, A, user), on(cluster, B, user)
    cid = a.new_conversation()
    with socket_on(cluster, A, a, cid) as on_a, socket_on(cluster, B, b, cid) as on_b:
        on_a.send(json.dumps({"type": "typing", "typing": True}))
        assert frames(on_b, lambda f: f["type"] == "typing")[-1] == {"type": "typing", "user": user, "typing": True}
        upstream.push(tokens=5)
        with a.post_stream(cid, "hello") as r:
            answer_id = read_all(r)[0].data["message_id"]
        states = frames(on_b, lambda f: f.get("state") == "finished")
        assert [(f["message_id"], f["state"]) for f in states if f["type"] == "generation"] == [
            (answer_id, "started"),
            (answer_id, "finished"),
        ]
        with pytest.raises(TimeoutError):  # A's own typing never came back to A
            while True:
                frame = json.loads(on_a.recv(timeout=0.3))
                assert frame["type"] != "typing", frame


def test_the_websocket_refuses_strangers_on_every_worker(cluster, user, upstream):
    owner = on(cluster, B, user)
    cid = owner.new_conversation()
    cluster.create_user(f"{user}-other", "correct-horse-battery")
    other = on(cluster, A, f"{user}-other")
    for worker, client, origin in [
        (A, other, None),  # another user's conversation
        (B, owner, "https://evil.example"),  # a foreign origin
    ]:
        with pytest.raises(InvalidStatus) as refused:
            socket_on(cluster, worker, client, cid, origin=origin)
        assert refused.value.response.status_code == 403
    anonymous = cluster.workers[A].base_url.replace("http://", "ws://") + f"/ws/conversations/{cid}/"
    with pytest.raises(InvalidStatus):
        ws_connect(anonymous, origin=cluster.workers[A].base_url, open_timeout=5)


def test_many_cancels_from_b_all_reach_a(cluster, user, upstream):
    """Ten answers on A at once, each cancelled from B: every one stops, none is lost."""
    a, b = on(cluster, A, user), on(cluster, B, user)
    upstream.default.tokens, upstream.default.rate = 1000, 50
    conversations = [a.new_conversation() for _ in range(10)]
    results: dict[int, list] = {}

    def run(cid: int) -> None:
        with a.post_stream(cid, "many") as r:
            stream = EventStream(r)
            seen = stream.events(limit=3)
            b.cancel(seen[0].data["message_id"])
            results[cid] = seen + stream.events()

    threads = [threading.Thread(target=run, args=(cid,)) for cid in conversations]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for cid in conversations:
        assert results[cid][-1].data["status"] == "cancelled"
        assert b.answer(cid)["content"] == text_of(results[cid])
