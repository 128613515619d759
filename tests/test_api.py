"""The JSON API through Django's async test client: auth, isolation, CRUD and bad input."""

import asyncio
import json

import pytest

from chat.models import Conversation, Message
from tests.live import Event, iter_sse, text_of

pytestmark = pytest.mark.django_db(transaction=True)


async def events_of(response) -> list[Event]:
    body = b"".join([chunk async for chunk in response.streaming_content])
    return [e for e in iter_sse(iter(body.decode().split("\n"))) if isinstance(e, Event)]


async def post_json(client, url: str, data) -> object:
    body = data if isinstance(data, (str, bytes)) else json.dumps(data)
    return await client.post(url, body, content_type="application/json")


def error_code(response) -> str:
    return json.loads(response.content)["error"]["code"]


# --- auth ---------------------------------------------------------------------------------


# Who may call what (no login: 401 or the login page; another user's objects: 404) is the
# isolation table, tests/test_isolation.py.


async def test_unsafe_methods_need_the_csrf_token(client_for, user):
    client = await client_for(user, enforce_csrf_checks=True)
    r = await post_json(client, "/api/conversations/", {})
    assert r.status_code == 403 and error_code(r) == "csrf_failed"
    assert await Conversation.objects.acount() == 0
    await client.get("/accounts/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    r = await client.post("/api/conversations/", "{}", content_type="application/json", headers={"X-CSRFToken": token})
    assert r.status_code == 201


# --- conversations ------------------------------------------------------------------------


async def test_create_list_get_delete_conversation(client_for, user):
    client = await client_for(user)
    r = await post_json(client, "/api/conversations/", {"title": "  Trip   plans "})
    assert r.status_code == 201
    created = json.loads(r.content)
    assert set(created) == {"id", "title", "model", "system_prompt", "created_at", "updated_at"}
    assert created["title"] == "Trip plans"
    second = json.loads((await post_json(client, "/api/conversations/", {})).content)
    listed = json.loads((await client.get("/api/conversations/")).content)["conversations"]
    assert [c["id"] for c in listed] == [second["id"], created["id"]]  # newest first
    detail = json.loads((await client.get(f"/api/conversations/{created['id']}/")).content)
    assert detail["messages"] == [] and detail["title"] == "Trip plans"
    r = await client.delete(f"/api/conversations/{created['id']}/")
    assert r.status_code == 204
    assert (await client.get(f"/api/conversations/{created['id']}/")).status_code == 404


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_json"),
        ({}, 400, "content_required"),
        ({"content": ""}, 400, "content_empty"),
        ({"content": "   \n\t"}, 400, "content_empty"),
        ({"content": 42}, 400, "invalid_content"),
        ({"content": ["a"]}, 400, "invalid_content"),
        ({"content": "x" * 32_001}, 413, "content_too_long"),
    ],
)
async def test_bad_message_bodies_are_refused_and_change_nothing(client_for, user, upstream, body, status, code):
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", body)
    assert (r.status_code, error_code(r)) == (status, code)
    assert await Message.objects.acount() == 0
    assert upstream.records == []


async def test_the_content_limit_is_a_setting(client_for, user, app_settings):
    app_settings.CHAT_MAX_CONTENT_CHARS = 10
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "eleven char"})
    assert r.status_code == 413 and error_code(r) == "content_too_long"


@pytest.mark.parametrize(
    ("body", "code"),
    [({"title": 5}, "invalid_title"), ({"title": "t" * 201}, "title_too_long"), ("nope", "invalid_json")],
)
async def test_bad_conversation_bodies_are_refused(client_for, user, body, code):
    client = await client_for(user)
    r = await post_json(client, "/api/conversations/", body)
    assert r.status_code == 400 and error_code(r) == code
    assert await Conversation.objects.acount() == 0


async def test_unknown_ids_and_urls_are_404_json(client_for, user):
    client = await client_for(user)
    for method, url in [
        ("get", "/api/conversations/999/"),
        ("delete", "/api/conversations/999/"),
        ("get", "/api/messages/999/stream/"),
        ("post", "/api/messages/999/cancel/"),
        ("get", "/api/nothing-here/"),
    ]:
        r = await getattr(client, method)(url)
        assert r.status_code == 404 and error_code(r) == "not_found", url


async def test_wrong_methods_are_405_json(client_for, user):
    client = await client_for(user)
    for method, url in [
        ("put", "/api/conversations/"),
        ("post", "/api/conversations/1/"),
        ("get", "/api/conversations/1/messages/"),
        ("get", "/api/messages/1/cancel/"),
        ("delete", "/api/messages/1/stream/"),
    ]:
        r = await getattr(client, method)(url)
        assert r.status_code == 405 and error_code(r) == "method_not_allowed", url
        assert r["Allow"]


async def test_a_bad_last_event_id_is_refused(client_for, user, upstream):
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    events = await events_of(await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "hi"}))
    answer_id = events[0].data["message_id"]
    for bad in ("-1", "abc", "1.5"):
        r = await client.get(f"/api/messages/{answer_id}/stream/", headers={"Last-Event-ID": bad})
        assert r.status_code == 400 and error_code(r) == "invalid_last_event_id"
    user_message_id = events[0].data["user_message_id"]
    r = await client.get(f"/api/messages/{user_message_id}/stream/")
    assert r.status_code == 400 and error_code(r) == "not_an_answer"


# --- answering ----------------------------------------------------------------------------


async def test_an_answer_streams_and_the_conversation_gets_a_title(client_for, user, upstream):
    upstream.push(tokens=["Hello", ", ", "wörld ", "🌍"])
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "Say hello to the world"})
    assert r.status_code == 200 and r["Content-Type"] == "text/event-stream"
    events = await events_of(r)
    assert text_of(events) == "Hello, wörld 🌍"
    detail = json.loads((await client.get(f"/api/conversations/{cid}/")).content)
    assert detail["title"] == "Say hello to the world"
    user_msg, answer = detail["messages"]
    assert (user_msg["role"], user_msg["content"], user_msg["stats"]) == ("user", "Say hello to the world", None)
    assert answer["content"] == "Hello, wörld 🌍" and answer["status"] == "complete"
    assert set(answer["stats"]) == {"ttft_ms", "tokens", "duration_ms", "tokens_per_s", "finish_reason", "model"}


async def test_an_answer_whose_response_starts_streaming_late_is_not_abandoned(client_for, user, upstream):
    """Under heavy load the posting response may start streaming seconds after the answer began
    (longer than the 1 s grace here): its answer must not be given up as unfollowed meanwhile."""
    upstream.push(tokens=30, rate=15)  # two seconds of answer
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "slow start"})
    await asyncio.sleep(1.5)  # the response has not been read from yet: nobody follows
    events = await events_of(r)
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == "".join(f"w{i} " for i in range(30))


async def test_earlier_turns_go_upstream_within_the_context_budget(client_for, user, upstream, app_settings):
    app_settings.CHAT_CONTEXT_CHARS = 60
    app_settings.CHAT_MAX_TOKENS = 77
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    for i, words in enumerate(["first " * 5, "second " * 2, "third"]):
        upstream.push(tokens=[f"answer{i}"])
        await events_of(await post_json(client, f"/api/conversations/{cid}/messages/", {"content": words.strip()}))
    sent = upstream.records[-1].body
    assert sent["max_tokens"] == 77 and sent["stream"] is True and sent["model"] == "scripted-model"
    # 60 chars: "third" (5) + answer1 (7) + "second second" (13) + answer0 (7) fit; "first..." (29) doesn't.
    assert [m["content"] for m in sent["messages"]] == [
        "You are a helpful assistant.",
        "answer0",
        "second second",
        "answer1",
        "third",
    ]


async def test_a_second_question_while_an_answer_streams_is_409(client_for, user, upstream):
    upstream.push(tokens=100, rate=20)
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    first = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "one"})
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "two"})
    assert r.status_code == 409 and error_code(r) == "answer_in_progress"
    assert await Message.objects.acount() == 2
    await first.streaming_content.aclose()


async def test_an_unreachable_upstream_is_an_sse_error_not_a_500(client_for, user, app_settings):
    from chat import llm
    from tests.live import free_port

    app_settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    await llm.close_client()
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "hello?"})
    assert r.status_code == 200
    events = await events_of(r)
    assert [e.event for e in events] == ["start", "error", "done"]
    assert events[1].data["code"] == "upstream_unavailable" and "unreachable" in events[1].data["message"]
    assert events[2].data["status"] == "error"
    answer = await Message.objects.aget(role="assistant")
    assert (answer.status, answer.content, answer.error_code) == ("error", "", "upstream_unavailable")


async def test_deleting_a_conversation_stops_its_answer(client_for, user, upstream):
    upstream.push(tokens=1000, rate=50)
    client = await client_for(user)
    cid = json.loads((await post_json(client, "/api/conversations/", {})).content)["id"]
    r = await post_json(client, f"/api/conversations/{cid}/messages/", {"content": "go on"})
    stream = r.streaming_content
    await anext(stream)
    assert (await client.delete(f"/api/conversations/{cid}/")).status_code == 204
    # Closed by the time the delete answers; the scripted server's thread notes it a moment later.
    upstream.wait_for(lambda: upstream.last().client_closed_at, 1.0, "the upstream to see its connection closed")
    assert await Message.objects.acount() == 0
    await stream.aclose()


async def test_pages_carry_a_strict_content_security_policy(client_for, user):
    client = await client_for(user)
    for url in ("/", "/accounts/login/"):
        csp = (await client.get(url))["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "img-src 'self' data:" in csp and "object-src 'none'" in csp
