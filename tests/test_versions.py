"""Versions of a turn (regenerate, edit), branches, and Continue: live server, scripted upstream."""

import pytest

from chat.services import CONTINUE_PROMPT
from tests.live import EventStream, read_all, text_of


def stream(client, method: str, url: str, **body):
    return client.http.stream(method, url, json=body or None)


def run(client, url: str, **body) -> list:
    with stream(client, "POST", url, **body) as r:
        assert r.status_code == 200, r.read()
        return read_all(r)


def branch(client, cid: int, path: int | None = None) -> list[dict]:
    r = client.http.get(f"/api/conversations/{cid}/", params={"path": path} if path else None)
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def error(r) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_regenerate_makes_a_second_version_and_the_branch_shows_the_latest(alice, upstream):
    cid = alice.new_conversation()
    upstream.push(tokens=3)
    first = run(alice, f"/api/conversations/{cid}/messages/", content="tell me")
    question, old = first[0].data["user_message_id"], first[0].data["message_id"]
    upstream.push(tokens=["new ", "answer "])
    second = run(alice, f"/api/messages/{old}/regenerate/")
    new = second[0].data["message_id"]
    assert second[0].data["user_message_id"] == question and new != old
    assert second[-1].data["status"] == "complete"
    sent = upstream.records[-1].prompt
    assert [m["content"] for m in sent if m["role"] != "system"] == ["tell me"]  # not the old answer
    on_screen = branch(alice, cid)
    assert [m["id"] for m in on_screen] == [question, new]
    assert on_screen[1]["version"] == {"index": 2, "count": 2, "ids": [old, new]}
    assert on_screen[1]["content"] == text_of(second) == "new answer "
    older = branch(alice, cid, path=old)
    assert [m["id"] for m in older] == [question, old] and older[1]["version"]["index"] == 1
    assert older[1]["content"] == text_of(first)


def test_regenerate_refuses_an_old_turn_a_question_and_a_busy_conversation(alice, upstream):
    cid = alice.new_conversation()
    upstream.push(tokens=2)
    first = run(alice, f"/api/conversations/{cid}/messages/", content="one")
    upstream.push(tokens=2)
    run(alice, f"/api/conversations/{cid}/messages/", content="two")
    old_answer, question = first[0].data["message_id"], first[0].data["user_message_id"]
    assert error(alice.http.post(f"/api/messages/{old_answer}/regenerate/")) == (409, "not_latest")
    assert error(alice.http.post(f"/api/messages/{question}/regenerate/")) == (400, "not_an_answer")
    upstream.name("long", tokens=1000, rate=50)
    with stream(alice, "POST", f"/api/conversations/{cid}/messages/", content="[script:long]") as r:
        live = EventStream(r).events(limit=2)[0].data["message_id"]
        assert error(alice.http.post(f"/api/messages/{live}/regenerate/")) == (409, "answer_in_progress")
        alice.cancel(live)
    assert len(branch(alice, cid)) == 6  # nothing stored by the refusals


def test_edit_makes_a_new_version_of_the_question_and_keeps_the_old_branch(alice, upstream):
    cid = alice.new_conversation()
    upstream.push(tokens=2)
    one = run(alice, f"/api/conversations/{cid}/messages/", content="first question")
    upstream.push(tokens=2)
    two = run(alice, f"/api/conversations/{cid}/messages/", content="second question")
    q1 = one[0].data["user_message_id"]
    upstream.push(tokens=["edited ", "answer "])
    edited = run(alice, f"/api/messages/{q1}/edit/", content="first question, better")
    sent = [m["content"] for m in upstream.records[-1].prompt if m["role"] != "system"]
    assert sent == ["first question, better"]  # later turns of the old branch are not context
    on_screen = branch(alice, cid)
    assert [m["content"] for m in on_screen] == ["first question, better", "edited answer "]
    assert on_screen[0]["version"]["index"] == 2 and on_screen[0]["version"]["ids"][0] == q1
    assert on_screen[1]["id"] == edited[0].data["message_id"]
    old = branch(alice, cid, path=two[0].data["message_id"])  # the old branch, whole
    assert [m["content"] for m in old] == ["first question", "w0 w1 ", "second question", "w0 w1 "]
    assert old[0]["version"] == {"index": 1, "count": 2, "ids": [q1, on_screen[0]["id"]]}
    answer = one[0].data["message_id"]
    assert error(alice.http.post(f"/api/messages/{answer}/edit/", json={"content": "x"})) == (400, "not_a_question")
    assert error(alice.http.post(f"/api/messages/{q1}/edit/", json={"content": " "})) == (400, "content_empty")


def test_a_new_message_can_follow_an_older_branch(alice, upstream):
    cid = alice.new_conversation()
    upstream.push(tokens=2)
    first = run(alice, f"/api/conversations/{cid}/messages/", content="start")
    old = first[0].data["message_id"]
    upstream.push(tokens=2)
    run(alice, f"/api/messages/{old}/regenerate/")
    upstream.push(tokens=2)
    run(alice, f"/api/conversations/{cid}/messages/", content="after the first version", parent_id=old)
    assert [m["role"] for m in branch(alice, cid)] == ["user", "assistant", "user", "assistant"]
    assert branch(alice, cid)[1]["id"] == old  # the branch with the newest turn is on screen
    bad = alice.http.post(f"/api/conversations/{cid}/messages/", json={"content": "x", "parent_id": 999_999_999})
    assert error(bad) == (404, "not_found")


@pytest.mark.parametrize("how", ["cancelled", "length"])
def test_continue_streams_more_of_the_same_answer_with_ids_going_on(alice, upstream, how):
    cid = alice.new_conversation()
    if how == "cancelled":
        upstream.push(tokens=1000, rate=50)
        with stream(alice, "POST", f"/api/conversations/{cid}/messages/", content="long story") as r:
            events = EventStream(r)
            before = events.events(limit=6)
            alice.cancel(before[0].data["message_id"])
            before += events.events()
    else:
        upstream.push(tokens=4, finish_reason="length")
        before = run(alice, f"/api/conversations/{cid}/messages/", content="long story")
    answer = before[0].data["message_id"]
    assert before[-1].data["status"] == how if how == "cancelled" else before[-1].data["finish_reason"] == "length"
    upstream.push(tokens=["more ", "text "])
    after = run(alice, f"/api/messages/{answer}/continue/")
    assert int(after[0].id) == int(before[-1].id) + 1 and after[0].event == "token"
    assert [int(e.id) for e in after] == list(range(int(before[-1].id) + 1, int(before[-1].id) + 1 + len(after)))
    assert after[-1].data["status"] == "complete"
    sent = upstream.records[-1].prompt
    assert sent[-2] == {"role": "assistant", "content": text_of(before)}
    assert sent[-1] == {"role": "user", "content": CONTINUE_PROMPT}
    stored = alice.answer(cid)
    assert stored["id"] == answer and stored["content"] == text_of(before) + text_of(after)
    with alice.resume_stream(answer, 0) as r:  # a replay numbers the events as they were streamed
        replay = read_all(r)
    tokens = [(int(e.id), e.data["text"]) for e in before + after if e.event == "token"]
    assert [(int(e.id), e.data["text"]) for e in replay if e.event == "token"] == tokens
    assert replay[-1].data["status"] == "complete" and int(replay[-1].id) == int(after[-1].id)
    with alice.resume_stream(answer, int(after[0].id)) as r:  # resume inside the second run
        assert text_of(read_all(r)) == text_of(after[1:])


def test_continue_refuses_a_complete_answer_and_a_question(alice, upstream):
    cid = alice.new_conversation()
    upstream.push(tokens=2)
    done = run(alice, f"/api/conversations/{cid}/messages/", content="short")
    answer, question = done[0].data["message_id"], done[0].data["user_message_id"]
    assert error(alice.http.post(f"/api/messages/{answer}/continue/")) == (409, "not_continuable")
    assert error(alice.http.post(f"/api/messages/{question}/continue/")) == (400, "not_an_answer")
    assert alice.answer(cid)["content"] == "w0 w1 " and alice.answer(cid)["status"] == "complete"
