"""Streaming through a real daphne process and a real HTTP client, against the scripted upstream."""

import threading
import time

import httpx
import pytest

from tests.live import Event, iter_sse, read_all, text_of


def test_answer_streams_token_by_token_and_is_stored_exactly(alice, upstream):
    upstream.push(tokens=30, rate=100)
    cid = alice.new_conversation()
    arrivals = []
    with alice.post_stream(cid, "Hello there") as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in r.headers
        events = []
        for item in iter_sse(r.iter_lines()):
            if isinstance(item, Event):
                events.append(item)
                arrivals.append(time.monotonic())
    assert [e.event for e in events[:2]] == ["start", "token"]
    assert events[-1].event == "done"
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    # 30 tokens at 100/s take ~0.3 s: they must arrive spread out, not in one lump at the end.
    token_times = [t for t, e in zip(arrivals, events, strict=True) if e.event == "token"]
    assert token_times[-1] - token_times[0] > 0.2
    done = events[-1].data
    assert done["status"] == "complete" and done["finish_reason"] == "stop"
    assert done["stats"]["tokens"] == 30 and done["stats"]["ttft_ms"] is not None
    stored = alice.answer(cid)
    assert stored["content"] == text_of(events) == "".join(f"w{i} " for i in range(30))
    assert stored["status"] == "complete"
    assert stored["stats"]["tokens"] == 30 and stored["stats"]["model"] == "scripted-model"


def test_stream_opens_with_retry_and_start_names_the_messages(alice, upstream):
    cid = alice.new_conversation()
    with alice.post_stream(cid, "hi") as r:
        lines = r.iter_lines()
        assert next(lines).startswith("retry: ")
        events = [e for e in iter_sse(lines) if isinstance(e, Event)]
    start = events[0].data
    convo = alice.conversation(cid)
    user_msg, answer = convo["messages"]
    assert start == {
        "message_id": answer["id"],
        "conversation_id": cid,
        "user_message_id": user_msg["id"],
        "model": "scripted-model",
    }


def test_ping_comments_flow_while_the_model_is_silent(alice, upstream):
    upstream.push(tokens=2, first_delay=1.3)  # the live server pings every 0.5 s
    cid = alice.new_conversation()
    with alice.post_stream(cid, "think first") as r:
        items = list(iter_sse(r.iter_lines()))
    assert items.count(": ping") >= 2
    assert text_of([i for i in items if isinstance(i, Event)]) == "w0 w1 "


def test_cancel_closes_the_upstream_at_once_and_keeps_what_was_streamed(alice, upstream):
    upstream.push(tokens=1000, rate=50)
    cid = alice.new_conversation()
    received = []
    with alice.post_stream(cid, "long answer please") as r:
        for item in iter_sse(r.iter_lines()):
            if not isinstance(item, Event):
                continue
            received.append(item)
            if item.event == "token" and len(received) == 10:
                # Cancel from a second connection, as the Stop button does, while still reading.
                cancelled_at = time.monotonic()
                answer_id = received[0].data["message_id"]
                cancel = alice.cancel(answer_id)
    assert cancel.status_code == 202 and cancel.json() == {"status": "cancelled"}
    record = upstream.last()
    # The upstream notices the close on its own thread, maybe a moment after `done` came.
    upstream.wait_for(lambda: record.client_closed_at, 2, "the upstream connection to close")
    assert record.client_closed_at - cancelled_at < 0.1
    assert received[-1].event == "done" and received[-1].data["status"] == "cancelled"
    stored = alice.answer(cid)
    assert stored["status"] == "cancelled"
    assert stored["content"] == text_of(received) and stored["content"]
    assert record.tokens_sent < 1000


def test_cancel_is_idempotent_and_reports_the_final_status(alice, upstream):
    upstream.push(tokens=5)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "short") as r:
        events = read_all(r)
    answer_id = events[0].data["message_id"]
    for _ in range(2):
        r = alice.cancel(answer_id)
        assert (r.status_code, r.json()) == (202, {"status": "complete"})
    assert alice.answer(cid)["content"] == "w0 w1 w2 w3 w4 "


def test_disconnect_detaches_and_the_generation_stops_after_the_grace(alice, upstream):
    upstream.push(tokens=1000, rate=50)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "then I leave") as r:
        received = read_all(r, limit=6)
    left_at = time.monotonic()  # the with-block closed the connection
    record = upstream.last()
    upstream.wait_for(lambda: record.client_closed_at, timeout=5, what="the upstream to be closed")
    # Grace is 1 s on the live server: not closed at once, closed soon after.
    assert 0.8 < record.client_closed_at - left_at < 2.0
    answer = _wait_status(alice, cid, "interrupted")
    # Stored: every token the generation relayed (what we saw, then more), nothing invented.
    relayed = answer["content"].count(" ")
    seen = sum(e.event == "token" for e in received)
    assert seen <= relayed <= record.tokens_sent
    assert answer["content"] == "".join(f"w{i} " for i in range(relayed))
    with alice.resume_stream(received[0].data["message_id"], 0) as r:
        replay = read_all(r)
    assert text_of(replay) == answer["content"]
    assert replay[-1].data["status"] == "interrupted"


def test_resume_with_last_event_id_continues_live_without_gap_or_double(alice, upstream):
    upstream.push(tokens=60, rate=60)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "resume me") as r:
        first = read_all(r, limit=15)
    with alice.resume_stream(first[0].data["message_id"], last_event_id=first[-1].id) as r:
        rest = read_all(r)
    assert rest[0].id == first[-1].id + 1
    ids = [e.id for e in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert text_of(first + rest) == "".join(f"w{i} " for i in range(60))
    assert rest[-1].data["status"] == "complete"
    assert alice.answer(cid)["content"] == text_of(first + rest)


def test_resume_of_a_finished_answer_replays_the_same_events_from_the_database(alice, upstream):
    upstream.push(tokens=12)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "done soon") as r:
        live_events = read_all(r)
    answer_id = live_events[0].data["message_id"]
    with alice.resume_stream(answer_id) as r:
        assert r.headers["content-type"] == "text/event-stream"
        replay = read_all(r)
    assert [(e.id, e.event, e.data) for e in replay] == [(e.id, e.event, e.data) for e in live_events]
    middle = live_events[len(live_events) // 2].id
    r = alice.http.get(f"/api/messages/{answer_id}/stream/?last_event_id={middle}")
    tail = read_all(r)
    assert tail[0].id == middle + 1 and tail == [e for e in live_events if e.id > middle]


def test_a_client_past_the_end_still_gets_done(alice, upstream):
    """E.g. its worker died after streaming text it never stored: the stream must still end."""
    upstream.push(tokens=3)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "short") as r:
        events = read_all(r)
    with alice.resume_stream(events[0].data["message_id"], last_event_id=40) as r:
        tail = read_all(r)
    assert [(e.id, e.event) for e in tail] == [(41, "done")]
    assert tail[0].data == events[-1].data


def test_an_emoji_split_into_lone_surrogates_is_joined(alice, upstream):
    upstream.push(tokens=["a", "\ud83d", "\ude00", "b", "\udc00"])  # JSON escapes, one half per chunk
    cid = alice.new_conversation()
    with alice.post_stream(cid, "emoji") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == alice.answer(cid)["content"] == "a\U0001f600b\ufffd"


def test_upstream_error_mid_stream_sends_error_then_done_and_keeps_the_partial(alice, upstream):
    upstream.push(tokens=20, error_after=7)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "fail halfway") as r:
        events = read_all(r)
    assert [e.event for e in events[-2:]] == ["error", "done"]
    assert events[-2].data["code"] == "upstream_error" and "recoverable" in events[-2].data
    assert events[-1].data["status"] == "error"
    stored = alice.answer(cid)
    assert stored["status"] == "error"
    assert stored["content"] == text_of(events) == "".join(f"w{i} " for i in range(7))


def test_dropped_upstream_connection_is_an_error_keeping_the_partial(alice, upstream):
    upstream.push(tokens=20, drop_after=4)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "drop") as r:
        events = read_all(r)
    assert events[-2].event == "error" and events[-2].data["code"] == "upstream_disconnected"
    assert alice.answer(cid)["content"] == text_of(events) == "w0 w1 w2 w3 "


def test_an_upstream_that_stalls_mid_answer_is_given_up_keeping_the_partial(alice, upstream):
    upstream.push(tokens=20, stall_after=3)  # the live server's stall timeout is 1 s, its read timeout 2 s
    cid = alice.new_conversation()
    with alice.post_stream(cid, "stall") as r:
        events = read_all(r)
    assert events[-2].data["code"] == "upstream_stalled" and "1 s" in events[-2].data["message"]
    assert events[-1].data["status"] == "error"
    assert alice.answer(cid)["content"] == text_of(events) == "w0 w1 w2 "
    record = upstream.last()
    upstream.wait_for(lambda: record.client_closed_at, 2, "the upstream connection to close")
    assert len(upstream.records) == 1  # text was shown: never tried again


def test_an_upstream_silent_before_its_first_token_is_tried_again_then_times_out(alice, upstream):
    for _ in range(3):  # the first try and CHAT_UPSTREAM_RETRIES (2) more
        upstream.push(tokens=2, first_delay=5)  # the live server's read timeout is 2 s
    cid = alice.new_conversation()
    with alice.post_stream(cid, "slow model") as r:
        events = read_all(r)
    assert [e.event for e in events] == ["start", "error", "done"]
    assert events[1].data["code"] == "upstream_timeout" and events[1].data["recoverable"] is True
    assert len(upstream.records) == 3
    upstream.wait_for(lambda: all(rec.client_closed_at for rec in upstream.records), 2, "every try to be closed")
    assert alice.answer(cid)["content"] == ""


@pytest.mark.parametrize(("status", "recoverable", "tries"), [(503, True, 3), (429, True, 3), (400, False, 1)])
def test_upstream_http_error_before_the_first_token_is_an_sse_error(alice, upstream, status, recoverable, tries):
    for _ in range(3):
        upstream.push(status=status)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "anyone there?") as r:
        assert r.status_code == 200
        events = read_all(r)
    assert [e.event for e in events] == ["start", "error", "done"]
    assert len(upstream.records) == tries  # 400 cannot get better by asking again
    error = events[1].data
    assert error["code"] == "upstream_error" and str(status) in error["message"]
    assert "scripted failure" not in error["message"]  # the upstream's own words stay in the log
    assert upstream.base_url.split("//")[1].split("/")[0] not in error["message"]
    assert error["recoverable"] is recoverable
    assert alice.answer(cid)["status"] == "error"
    with alice.resume_stream(events[0].data["message_id"]) as r:  # replayed from the database
        assert [(e.id, e.event, e.data) for e in read_all(r)] == [(e.id, e.event, e.data) for e in events]


def test_many_concurrent_answers_on_sqlite_all_complete(live, alice, upstream):
    upstream.default.tokens = 40
    upstream.default.rate = 100
    n = 40
    cids = [alice.new_conversation() for _ in range(n)]
    results: dict[int, list[Event]] = {}

    def run(cid: int) -> None:
        with httpx.Client(base_url=live.base_url, cookies=alice.http.cookies, headers=alice.http.headers) as c:
            with c.stream("POST", f"/api/conversations/{cid}/messages/", json={"content": "go"}) as r:
                results[cid] = read_all(r)

    threads = [threading.Thread(target=run, args=(cid,)) for cid in cids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expected = "".join(f"w{i} " for i in range(40))
    assert all(results[c][-1].data["status"] == "complete" for c in cids)
    assert all(text_of(results[c]) == expected for c in cids)
    assert all(alice.answer(c)["content"] == expected for c in cids)
    assert "database is locked" not in live.log()


def _wait_status(client, cid: int, status: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = client.answer(cid)
        if answer["status"] == status:
            return answer
        time.sleep(0.05)
    raise AssertionError(f"answer never reached {status!r}: {answer}")
