"""Upstream faults before the first token are tried again; after it, never (live server, scripted upstream)."""

import time

from tests.live import EventStream, read_all, text_of


def test_a_503_before_the_first_token_is_retried_and_the_answer_completes(alice, upstream):
    upstream.push(status=503)
    upstream.push(tokens=5)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "second time lucky") as r:
        events = read_all(r)
    assert [e.event for e in events] == ["start", *["token"] * len(events[1:-1]), "done"]
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == alice.answer(cid)["content"] == "w0 w1 w2 w3 w4 "
    assert len(upstream.records) == 2


def test_a_connection_dropped_before_any_text_is_retried(alice, upstream):
    upstream.push(tokens=5, drop_after=0)
    upstream.push(tokens=3)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "flaky network") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete" and text_of(events) == "w0 w1 w2 "
    assert len(upstream.records) == 2


def test_a_dropped_connection_after_text_is_not_retried(alice, upstream):
    upstream.push(tokens=5, drop_after=2)
    upstream.push(tokens=3)  # would be used by a (wrong) retry
    cid = alice.new_conversation()
    with alice.post_stream(cid, "flaky network") as r:
        events = read_all(r)
    assert events[-2].data["code"] == "upstream_disconnected"
    assert alice.answer(cid)["content"] == text_of(events) == "w0 w1 "
    assert len(upstream.records) == 1


def test_retry_after_from_the_upstream_is_honoured(alice, upstream):
    upstream.push(status=429, retry_after="1")
    upstream.push(tokens=2)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "busy model") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    first, second = upstream.records
    assert second.opened - first.opened >= 0.95  # not the 0.05 s back-off the live server would pick


def test_a_retry_after_longer_than_anyone_would_wait_is_an_error_at_once(alice, upstream):
    upstream.push(status=429, retry_after="600")
    cid = alice.new_conversation()
    with alice.post_stream(cid, "quota gone") as r:
        events = read_all(r)
    assert [e.event for e in events] == ["start", "error", "done"]
    assert events[1].data["code"] == "upstream_error" and "429" in events[1].data["message"]
    assert len(upstream.records) == 1


def test_stop_during_the_back_off_stops_at_once(alice, upstream):
    upstream.push(status=503, retry_after="5")
    cid = alice.new_conversation()
    with alice.post_stream(cid, "stop me while waiting") as r:
        stream = EventStream(r)
        answer_id = stream.events(limit=1)[0].data["message_id"]
        upstream.last()  # the first try has been refused: the back-off has begun
        asked = time.monotonic()
        cancel = alice.cancel(answer_id)
        answered = time.monotonic()
        rest = stream.events()
    assert cancel.json() == {"status": "cancelled"} and answered - asked < 2  # not the 5 s back-off
    assert rest[-1].data["status"] == "cancelled" and text_of(rest) == ""
    time.sleep(0.2)
    assert len(upstream.records) == 1  # and no second try after it
