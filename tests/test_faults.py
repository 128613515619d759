"""Nothing lost: a crashed worker's answers and a failing final save, on real processes."""

import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import LIVE_ENV
from tests.live import EventStream, LiveApp, free_port, read_all, text_of


def test_answers_of_a_killed_worker_become_interrupted_with_their_checkpointed_text(upstream, tmp_path):
    upstream.push(tokens=1000, rate=40)
    with LiveApp(tmp_path, {"OPENAI_BASE_URL": upstream.base_url, **LIVE_ENV}) as app:
        client = app.new_client("erin")
        cid = client.new_conversation()
        with client.post_stream(cid, "crash midway") as r:
            seen = read_all(r, limit=25)  # ~0.6 s in: a few 0.2 s checkpoints have happened
            app.proc.send_signal(signal.SIGKILL)
            app.proc.wait()
        checkpointed = client_answer_row(app, cid)
        assert checkpointed[1] == "streaming" and checkpointed[0], "nothing was checkpointed"
        app.start()  # a new process on the same database
        client = app.client("erin")
        answer = client.answer(cid)
        assert answer["status"] == "interrupted"
        assert answer["content"] == checkpointed[0]
        relayed = answer["content"].count(" ")  # tokens the dead worker had relayed and stored
        assert answer["content"] == "".join(f"w{i} " for i in range(relayed))
        with client.resume_stream(seen[0].data["message_id"], 0) as r:
            replay = read_all(r)
        assert text_of(replay) == answer["content"] and replay[-1].data["status"] == "interrupted"


def test_a_failing_final_save_still_ends_the_stream_with_error_and_done(live, alice, upstream):
    cid = alice.new_conversation()
    with sqlite3.connect(live.db_path) as db:  # the database refuses to store this answer
        db.execute(
            "CREATE TRIGGER refuse_final BEFORE UPDATE ON chat_message "
            f"WHEN NEW.conversation_id = {cid} AND NEW.status != 'streaming' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    try:
        upstream.push(tokens=5)
        started = time.monotonic()
        with alice.post_stream(cid, "save me") as r:
            events = read_all(r)
        assert time.monotonic() - started < 5  # it ended; it did not hang
        assert [e.event for e in events[-2:]] == ["error", "done"]
        assert events[-2].data["code"] == "storage_error"
        assert events[-1].data["status"] == "error"
    finally:
        with sqlite3.connect(live.db_path) as db:
            db.execute("DROP TRIGGER refuse_final")
    # The database is back: the save is tried again, storing what was streamed and what was said.
    stored = _wait_for(lambda: (a := alice.answer(cid))["status"] != "streaming" and a, timeout=10)
    assert (stored["status"], stored["content"]) == ("error", text_of(events))
    upstream.push(tokens=2)
    with alice.post_stream(cid, "and the conversation goes on") as r:
        assert read_all(r)[-1].data["status"] == "complete"


def client_answer_row(app: LiveApp, cid: int) -> tuple[str, str]:
    with sqlite3.connect(app.db_path) as db:
        return db.execute(
            "SELECT content, status FROM chat_message WHERE conversation_id = ? AND role = 'assistant'", (cid,)
        ).fetchone()


def test_checkpoints_are_periodic_prefixes_never_a_write_per_token(live, alice, upstream):
    """100 tokens over ~1 s with 0.2 s checkpoints: a handful of writes, each a prefix of the answer."""
    cid = alice.new_conversation()
    with sqlite3.connect(live.db_path) as db:  # log every write of this conversation's answer
        db.execute("CREATE TABLE answer_writes (content TEXT, status TEXT)")
        db.execute(
            "CREATE TRIGGER log_answer_writes AFTER UPDATE ON chat_message "
            f"WHEN NEW.conversation_id = {cid} AND NEW.role = 'assistant' "
            "BEGIN INSERT INTO answer_writes VALUES (NEW.content, NEW.status); END"
        )
    try:
        upstream.push(tokens=100, rate=100)
        with alice.post_stream(cid, "count the writes") as r:
            events = read_all(r)
        with sqlite3.connect(live.db_path) as db:
            writes = db.execute("SELECT content, status FROM answer_writes").fetchall()
    finally:
        with sqlite3.connect(live.db_path) as db:
            db.execute("DROP TRIGGER log_answer_writes")
            db.execute("DROP TABLE answer_writes")
    final = text_of(events)
    checkpoints = [content for content, status in writes if status == "streaming"]
    assert writes[-1] == (final, "complete")  # the final save, once
    assert sum(status != "streaming" for _, status in writes) == 1
    assert 2 <= len(checkpoints) <= 8  # ~1 s / 0.2 s, not 100
    assert all(final.startswith(c) for c in checkpoints)
    assert checkpoints == sorted(checkpoints, key=len)


def test_sigterm_drains_finishing_short_answers_refusing_new_ones_then_interrupts_the_rest(upstream, tmp_path):
    """SIGTERM (a deploy): no new answers; running ones get CHAT_DRAIN_S (2 s here) to finish;
    the rest are stored at once, exactly as far as they were streamed, and told so with `done`."""
    upstream.name("long", tokens=1000, rate=40)
    upstream.name("short", tokens=30, rate=40)  # about 0.75 s: ends within the drain
    env = {"OPENAI_BASE_URL": upstream.base_url, **LIVE_ENV, "CHAT_CHECKPOINT_S": "30"}  # no checkpoint helps
    with LiveApp(tmp_path, env) as app:
        client = app.new_client("hana")
        long_cid, short_cid, late_cid = (client.new_conversation() for _ in range(3))
        with client.post_stream(long_cid, "deploy during this [script:long]") as r1:
            with client.post_stream(short_cid, "quick one [script:short]") as r2:
                long_stream, short_stream = EventStream(r1), EventStream(r2)
                seen, short_seen = long_stream.events(limit=20), short_stream.events(limit=2)
                app.proc.send_signal(signal.SIGTERM)
                ready = _wait_for(lambda: (r := client.http.get("/readyz")).status_code == 503 and r)
                late = client.http.post(f"/api/conversations/{late_cid}/messages/", json={"content": "too late"})
                short_seen += short_stream.events()
                seen += long_stream.events()  # the rest, until the server closes
        assert app.proc.wait(15) is not None
        content, status = client_answer_row(app, long_cid)
        short_content, short_status = client_answer_row(app, short_cid)
        late_rows = client_answer_row(app, late_cid)
    assert ready.json()["status"] == "draining"
    assert late.status_code == 503 and late.json()["error"]["code"] == "draining" and late.headers["Retry-After"]
    assert late_rows is None  # nothing stored for the refused post
    assert short_status == "complete" and short_seen[-1].data["status"] == "complete"
    assert short_content == text_of(short_seen) == "".join(f"w{i} " for i in range(30))
    assert status == "interrupted"  # stored before the process exited, not at the next start
    assert content == text_of(seen)
    assert content == "".join(f"w{i} " for i in range(content.count(" "))) and len(content) > 40
    assert seen[-1].event == "done" and seen[-1].data["status"] == "interrupted"


def _wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_with_redis_out_of_reach_a_post_is_refused_with_503_and_nothing_is_stored(upstream, tmp_path):
    env = {"OPENAI_BASE_URL": upstream.base_url, **LIVE_ENV, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with LiveApp(tmp_path, env) as app:
        client = app.new_client("rita")
        cid = client.new_conversation()
        r = client.http.post(f"/api/conversations/{cid}/messages/", json={"content": "anyone?"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert int(r.headers["Retry-After"]) >= 1
        assert client.conversation(cid)["messages"] == []
    assert upstream.records == []


def test_a_post_whose_answer_cannot_be_stored_hangs_up_its_request_and_stores_nothing(live, alice, upstream):
    # The request goes upstream as soon as the checks pass, and the question and the answer are
    # stored while the model reads it: a write that fails then must not leave the model talking.
    cid = alice.new_conversation()
    with sqlite3.connect(live.db_path) as db:
        db.execute(
            "CREATE TRIGGER refuse_answer BEFORE INSERT ON chat_message "
            f"WHEN NEW.conversation_id = {cid} AND NEW.role = 'assistant' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    try:
        upstream.name("slow-thinker", tokens=3, first_delay=30)
        r = alice.http.post(f"/api/conversations/{cid}/messages/", json={"content": "[script:slow-thinker] hi"})
    finally:
        with sqlite3.connect(live.db_path) as db:
            db.execute("DROP TRIGGER refuse_answer")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert alice.conversation(cid)["messages"] == []  # the question went with the answer
    time.sleep(0.3)  # a request still on its way would have arrived by now
    sent = [rec for rec in upstream.records if "slow-thinker" in rec.prompt[-1]["content"]]
    # Hung up by the app, not by its read timeout (2 s in LIVE_ENV), nor 30 s later by the upstream.
    upstream.wait_for(lambda: all(rec.client_closed_at for rec in sent), timeout=1, what="the request hung up")
    upstream.push(tokens=2)
    with alice.post_stream(cid, "and the conversation goes on") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete" and text_of(events) == "w0 w1 "


def test_stop_reaches_the_model_while_every_sync_thread_waits_on_a_locked_database(upstream, tmp_path):
    env = {"OPENAI_BASE_URL": upstream.base_url, **LIVE_ENV, "CHAT_SYNC_THREADS": "2"}
    with LiveApp(tmp_path, env) as app, ThreadPoolExecutor(5) as pool:
        client = app.new_client("stan")
        cids = [client.new_conversation() for _ in range(4)]
        others = [app.client("stan") for _ in range(4)]  # logged in now: a login writes
        upstream.name("long-talk", tokens=1000, rate=20)
        answer = pool.submit(_answer, client, cids[0], "[script:long-talk] go on")  # read as it streams
        talking = upstream.wait_for(lambda: [x for x in upstream.records if "long-talk" in x.prompt[-1]["content"]])
        message_id = _wait_for(lambda: _answer_id(others[3], cids[0]), timeout=5)
        lock = sqlite3.connect(app.db_path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # every write now waits its turn (the busy timeout is 30 s)
        try:
            # Posts fill both sync threads, each waiting for the lock inside its transaction.
            posts = [pool.submit(_answer, c, cid, "me too") for c, cid in zip(others[:3], cids[1:], strict=True)]
            time.sleep(1.0)
            assert not any(post.done() for post in posts)
            stopping = pool.submit(others[3].cancel, message_id)
            # The Stop takes a thread of its own: the model is hung up on while the lock holds.
            upstream.wait_for(lambda: talking[0].client_closed_at, timeout=3, what="the model hung up on")
            assert not any(post.done() for post in posts)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert stopping.result(timeout=30).json()["status"] == "cancelled"
        assert answer.result(timeout=30)[-1].data["status"] == "cancelled"
        assert all(post.result(timeout=30)[-1].data["status"] == "complete" for post in posts)


def _answer_id(client, conversation_id: int) -> int | None:
    messages = client.conversation(conversation_id)["messages"]
    return next((m["id"] for m in messages if m["role"] == "assistant"), None)


def _answer(client, conversation_id: int, content: str) -> list:
    with client.post_stream(conversation_id, content) as r:
        return read_all(r)
