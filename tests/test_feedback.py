"""Feedback on answers (`PUT`/`DELETE /api/messages/<id>/feedback/`) through the real daphne server,
and the conversation JSON that carries it, read without a query per message."""

import json
from datetime import datetime

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat.models import Conversation, Feedback, Message
from tests.live import ApiClient, EventStream, read_all

NOT_FOUND_ID = 987_654_321


def answered(client: ApiClient, upstream, question: str = "How tall is Everest?") -> tuple[int, int, int]:
    """A conversation with one finished answer: (conversation id, answer id, question id)."""
    upstream.push(tokens=["About ", "8849 ", "metres."])
    cid = client.new_conversation()
    with client.post_stream(cid, question) as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    return cid, events[0].data["message_id"], events[0].data["user_message_id"]


def put(client: ApiClient, message_id: int, body) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return client.http.put(
        f"/api/messages/{message_id}/feedback/", content=content, headers={"Content-Type": "application/json"}
    )


def delete(client: ApiClient, message_id: int) -> httpx.Response:
    return client.http.delete(f"/api/messages/{message_id}/feedback/")


def error_of(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def feedback_shown(client: ApiClient, cid: int) -> list:
    """Each message's `feedback` as the conversation JSON gives it, in order."""
    return [m["feedback"] for m in client.conversation(cid)["messages"]]


# --- the happy path -------------------------------------------------------------------------------


def test_rate_change_and_remove_an_answer(alice, upstream):
    cid, answer, _ = answered(alice, upstream)
    assert feedback_shown(alice, cid) == [None, None]

    r = put(alice, answer, {"rating": -1, "comment": "  Too vague.  "})
    assert r.status_code == 200
    assert set(r.json()) == {"rating", "comment", "updated_at"}
    assert (r.json()["rating"], r.json()["comment"]) == (-1, "Too vague.")
    assert feedback_shown(alice, cid) == [None, {"rating": -1, "comment": "Too vague."}]

    # Changing the rating without a comment keeps the comment; one feedback per answer, changed.
    changed = put(alice, answer, {"rating": 1})
    assert changed.status_code == 200 and changed.json()["rating"] == 1
    assert datetime.fromisoformat(changed.json()["updated_at"]) > datetime.fromisoformat(r.json()["updated_at"])
    assert feedback_shown(alice, cid) == [None, {"rating": 1, "comment": "Too vague."}]
    assert put(alice, answer, {"rating": 1, "comment": ""}).json()["comment"] == ""
    assert feedback_shown(alice, cid) == [None, {"rating": 1, "comment": ""}]

    assert delete(alice, answer).status_code == 204
    assert feedback_shown(alice, cid) == [None, None]
    again = delete(alice, answer)  # idempotent
    assert again.status_code == 204 and again.content == b""


def test_a_comment_of_the_maximum_length_is_kept_whole(alice, upstream):
    cid, answer, _ = answered(alice, upstream)
    comment = "é" * 1999 + "!"
    assert put(alice, answer, {"rating": -1, "comment": comment}).status_code == 200
    assert feedback_shown(alice, cid)[1] == {"rating": -1, "comment": comment}


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_rating"),
        ({"comment": "no rating"}, 400, "invalid_rating"),
        ({"rating": 0}, 400, "invalid_rating"),
        ({"rating": 2}, 400, "invalid_rating"),
        ({"rating": -2}, 400, "invalid_rating"),
        ({"rating": 0.5}, 400, "invalid_rating"),
        ({"rating": "1"}, 400, "invalid_rating"),
        ({"rating": True}, 400, "invalid_rating"),
        ({"rating": None}, 400, "invalid_rating"),
        ({"rating": [1]}, 400, "invalid_rating"),
        ({"rating": 1, "comment": 5}, 400, "invalid_comment"),
        ({"rating": 1, "comment": ["a"]}, 400, "invalid_comment"),
        ({"rating": 1, "comment": "a\x00b"}, 400, "invalid_comment"),
        ({"rating": 1, "comment": "x" * 2001}, 413, "comment_too_long"),
        ("{not json", 400, "invalid_json"),
        ("[1]", 400, "invalid_json"),
    ],
)
def test_bad_feedback_is_refused_with_a_code_and_nothing_changes(alice, upstream, body, status, code):
    cid, answer, _ = answered(alice, upstream)
    assert put(alice, answer, {"rating": 1, "comment": "keep me"}).status_code == 200
    r = put(alice, answer, body)
    assert (r.status_code, error_of(r)) == (status, code), r.text
    assert feedback_shown(alice, cid)[1] == {"rating": 1, "comment": "keep me"}


def test_a_question_takes_no_feedback(alice, upstream):
    cid, _, question = answered(alice, upstream)
    for r in (put(alice, question, {"rating": 1}), delete(alice, question)):
        assert (r.status_code, error_of(r)) == (400, "not_an_answer")
    assert feedback_shown(alice, cid) == [None, None]


def test_an_answer_still_streaming_takes_no_feedback_until_it_ends(alice, upstream):
    upstream.push(tokens=3000, rate=50)
    cid = alice.new_conversation()
    with alice.post_stream(cid, "Write a lot") as response:
        stream = EventStream(response)
        answer = stream.events(limit=3)[0].data["message_id"]
        r = put(alice, answer, {"rating": -1, "comment": "too slow"})
        assert (r.status_code, error_of(r)) == (409, "answer_streaming")
        assert alice.cancel(answer).json() == {"status": "cancelled"}
        assert stream.events()[-1].data["status"] == "cancelled"
    assert feedback_shown(alice, cid) == [None, None]
    # Ended (even stopped), it may be rated.
    assert put(alice, answer, {"rating": -1, "comment": "too slow"}).status_code == 200
    assert feedback_shown(alice, cid)[1] == {"rating": -1, "comment": "too slow"}


def test_another_user_gets_404_exactly_like_an_unknown_id(alice, bob, upstream):
    cid, answer, question = answered(alice, upstream)
    assert put(alice, answer, {"rating": 1, "comment": "mine"}).status_code == 200
    for target in (answer, question):
        for r, unknown in (
            (put(bob, target, {"rating": -1}), put(bob, NOT_FOUND_ID, {"rating": -1})),
            (put(bob, target, {"rating": 7}), put(bob, NOT_FOUND_ID, {"rating": 7})),
            (delete(bob, target), delete(bob, NOT_FOUND_ID)),
        ):
            assert (r.status_code, error_of(r)) == (404, "not_found")
            assert r.content == unknown.content
    assert feedback_shown(alice, cid) == [None, {"rating": 1, "comment": "mine"}]


def test_feedback_needs_a_login_and_the_csrf_token(live, alice, upstream):
    cid, answer, _ = answered(alice, upstream)
    no_token = alice.http.put(f"/api/messages/{answer}/feedback/", json={"rating": 1}, headers={"X-CSRFToken": ""})
    assert (no_token.status_code, error_of(no_token)) == (403, "csrf_failed")
    with httpx.Client(base_url=live.base_url) as anonymous:
        anonymous.get("/accounts/login/")  # a CSRF token, but no login
        anonymous.headers["X-CSRFToken"] = anonymous.cookies["csrftoken"]
        r = anonymous.put(f"/api/messages/{answer}/feedback/", json={"rating": 1})
        assert (r.status_code, error_of(r)) == (401, "not_authenticated")
    assert feedback_shown(alice, cid) == [None, None]


# --- the conversation JSON: one query for all the feedback ---------------------------------------


def seed(user, answers: int) -> Conversation:
    conversation = Conversation.objects.create(owner=user, title="seeded")
    answer = None
    for i in range(answers):
        question = Message.objects.create(conversation=conversation, role="user", content=f"q{i}", parent=answer)
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content=f"a{i}", tokens=2, parent=question
        )
        if i % 3:  # some rated, some not
            Feedback.objects.create(message=answer, user=user, rating=1 if i % 2 else -1, comment=f"c{i}")
    return conversation


def queries_for(client: Client, conversation: Conversation) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as captured:
        r = client.get(f"/api/conversations/{conversation.pk}/")
    assert r.status_code == 200
    return len(captured), r.json()


@pytest.mark.django_db
def test_the_conversation_json_reads_feedback_without_a_query_per_message(user):
    client = Client()
    client.force_login(user)
    few_count, few = queries_for(client, seed(user, 2))
    many_count, many = queries_for(client, seed(user, 60))
    assert few_count >= 2  # the session and the conversation at least: the queries are seen
    assert many_count == few_count, "a query per message (N+1)"
    answers = [m for m in many["messages"] if m["role"] == "assistant"]
    assert len(answers) == 60
    assert answers[1]["feedback"] == {"rating": 1, "comment": "c1"}
    assert answers[2]["feedback"] == {"rating": -1, "comment": "c2"}
    assert answers[3]["feedback"] is None
    assert all(m["feedback"] is None for m in many["messages"] if m["role"] == "user")
    assert few["messages"][3]["feedback"] == {"rating": 1, "comment": "c1"}
