"""Conversation settings (PATCH title, model, system prompt), search, and the model list.

In-process tests use SQLite (icontains search); the PostgreSQL test runs the app under daphne on a
database of its own (full-text search). The upstream is the scripted one, over loopback.
"""

import json
import uuid

import psycopg
import pytest
from django.test import AsyncClient

from chat import llm
from chat.models import Conversation, Message
from tests.conftest import LIVE_ENV
from tests.live import Event, LiveApp, free_port, iter_sse, read_all, text_of
from tests.test_postgres import SERVER

pytestmark = pytest.mark.django_db(transaction=True)


async def events_of(response) -> list[Event]:
    body = b"".join([chunk async for chunk in response.streaming_content])
    return [e for e in iter_sse(iter(body.decode().split("\n"))) if isinstance(e, Event)]


async def new_conversation(client, title: str = "") -> int:
    r = await client.post("/api/conversations/", json.dumps({"title": title}), content_type="application/json")
    assert r.status_code == 201
    return json.loads(r.content)["id"]


async def patch(client, cid: int, body) -> object:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.patch(f"/api/conversations/{cid}/", data, content_type="application/json")


async def ask(client, cid: int, content: str) -> list[Event]:
    r = await client.post(
        f"/api/conversations/{cid}/messages/", json.dumps({"content": content}), content_type="application/json"
    )
    assert r.status_code == 200
    return await events_of(r)


async def get_json(client, url: str) -> tuple[int, dict]:
    r = await client.get(url)
    return r.status_code, json.loads(r.content)


def error_code(response) -> str:
    return json.loads(response.content)["error"]["code"]


# --- PATCH ----------------------------------------------------------------------------------------


async def test_patch_sets_title_model_and_system_prompt(client_for, user, upstream):
    upstream.models = ["scripted", "bigger-model"]
    client = await client_for(user)
    cid = await new_conversation(client, "Old name")
    r = await patch(client, cid, {"title": "  New   name ", "model": "bigger-model", "system_prompt": " Be brief. "})
    assert r.status_code == 200
    body = json.loads(r.content)
    assert (body["id"], body["title"], body["model"], body["system_prompt"]) == (
        cid,
        "New name",
        "bigger-model",
        "Be brief.",
    )
    _, detail = await get_json(client, f"/api/conversations/{cid}/")
    assert (detail["title"], detail["model"], detail["system_prompt"]) == ("New name", "bigger-model", "Be brief.")
    # One field at a time leaves the others; blank (or the default's name) means the default again.
    r = await patch(client, cid, {"model": "scripted-model"})
    assert json.loads(r.content)["model"] == "" and json.loads(r.content)["system_prompt"] == "Be brief."
    r = await patch(client, cid, {"system_prompt": "", "title": None})
    assert (json.loads(r.content)["system_prompt"], json.loads(r.content)["title"]) == ("", "")


async def test_a_rename_does_not_move_the_conversation_up(client_for, user):
    client = await client_for(user)
    older = await new_conversation(client, "older")
    newer = await new_conversation(client, "newer")
    assert (await patch(client, older, {"title": "older, renamed"})).status_code == 200
    _, listed = await get_json(client, "/api/conversations/")
    assert [c["id"] for c in listed["conversations"]] == [newer, older]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "no-such-model"}, 400, "unknown_model"),
        ({"model": 7}, 400, "invalid_model"),
        ({"title": "x" * 201}, 400, "title_too_long"),
        ({"title": ["a"]}, 400, "invalid_title"),
        ({"title": "a\x00b"}, 400, "invalid_title"),
        ({"system_prompt": "x" * 4001}, 400, "system_prompt_too_long"),
        ({"system_prompt": {"a": 1}}, 400, "invalid_system_prompt"),
        ({"system_prompt": "nul\x00"}, 400, "invalid_system_prompt"),
        ({"title": "fine", "owner": 1}, 400, "unknown_field"),
        ("{not json", 400, "invalid_json"),
        ("[]", 400, "invalid_json"),
    ],
)
async def test_bad_patches_are_refused_and_change_nothing(client_for, user, upstream, body, status, code):
    client = await client_for(user)
    cid = await new_conversation(client, "Keep me")
    assert (await patch(client, cid, {"system_prompt": "Stay."})).status_code == 200
    r = await patch(client, cid, body)
    assert (r.status_code, error_code(r)) == (status, code)
    c = await Conversation.objects.aget(pk=cid)
    assert (c.title, c.model, c.system_prompt) == ("Keep me", "", "Stay.")


async def test_a_model_the_upstream_starts_offering_is_accepted_at_once(client_for, user, upstream):
    """The cached list is asked again before a model is refused: a new model needs no minute's wait."""
    client = await client_for(user)
    cid = await new_conversation(client)
    await get_json(client, "/api/models/?refresh=1")
    upstream.models = ["scripted", "brand-new"]
    r = await patch(client, cid, {"model": "brand-new"})
    assert r.status_code == 200 and json.loads(r.content)["model"] == "brand-new"


async def test_another_users_conversation_cannot_be_patched(client_for, user, other_user, upstream):
    mine = await client_for(user)
    cid = await new_conversation(mine, "Private")
    theirs = await client_for(other_user)
    for body in ({"title": "mine now"}, {"model": "scripted"}, {"model": "no-such-model"}, {"owner": 2}):
        r = await patch(theirs, cid, body)
        assert (r.status_code, error_code(r)) == (404, "not_found")
    c = await Conversation.objects.aget(pk=cid)
    assert (c.title, c.model, c.system_prompt) == ("Private", "", "")


# --- the answer uses them -------------------------------------------------------------------------


async def test_answers_use_the_conversations_model_and_system_prompt(client_for, user, upstream, app_settings):
    upstream.models = ["scripted", "pirate-model"]
    client = await client_for(user)
    cid = await new_conversation(client)
    await patch(client, cid, {"model": "pirate-model", "system_prompt": "Talk like a pirate."})
    upstream.push(tokens=["Arr", "!"])
    events = await ask(client, cid, "Hello")
    sent = upstream.last().body
    assert sent["model"] == "pirate-model"
    assert sent["messages"] == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "Hello"},
    ]
    assert events[0].data["model"] == "pirate-model" and text_of(events) == "Arr!"
    assert events[-1].data["stats"]["model"] == "pirate-model"
    # Back to the defaults: the next answer uses them, and each answer keeps the model it used.
    await patch(client, cid, {"model": "", "system_prompt": ""})
    upstream.push(tokens=["Hello."])
    await ask(client, cid, "Plainly now")
    sent = upstream.last().body
    assert sent["model"] == "scripted-model"
    assert sent["messages"][0] == {"role": "system", "content": app_settings.CHAT_SYSTEM_PROMPT}
    _, detail = await get_json(client, f"/api/conversations/{cid}/")
    answers = [m for m in detail["messages"] if m["role"] == "assistant"]
    assert [a["stats"]["model"] for a in answers] == ["pirate-model", "scripted-model"]


async def test_a_model_chosen_while_an_answer_streams_applies_to_the_next_one(client_for, user, upstream):
    upstream.models = ["scripted", "second-model"]
    client = await client_for(user)
    cid = await new_conversation(client)
    upstream.push(tokens=40, rate=40)
    r = await client.post(
        f"/api/conversations/{cid}/messages/", json.dumps({"content": "long one"}), content_type="application/json"
    )
    stream = r.streaming_content
    await anext(stream)
    changed = await patch(client, cid, {"model": "second-model"})
    assert changed.status_code == 200
    rest = b"".join([chunk async for chunk in stream])
    assert b'"status": "complete"' in rest or b'"status":"complete"' in rest
    upstream.push(tokens=["ok"])
    events = await ask(client, cid, "next")
    assert [rec.body["model"] for rec in upstream.records] == ["scripted-model", "second-model"]
    assert events[0].data["model"] == "second-model"
    models = [m.model async for m in Message.objects.filter(role="assistant").order_by("id")]
    assert models == ["scripted-model", "second-model"]


# --- search (SQLite: icontains) -------------------------------------------------------------------


async def seed_search(client, upstream) -> dict:
    """Three conversations: one matches in a message, one in its title only, one not at all."""
    ids = {}
    ids["physics"] = await new_conversation(client, "Physics homework")
    upstream.push(tokens=["Quantum ", "entanglement ", "links ", "two ", "particles."])
    events = await ask(client, ids["physics"], "Explain entanglement please")
    ids["answer"] = events[0].data["message_id"]
    ids["question"] = events[0].data["user_message_id"]
    ids["titled"] = await new_conversation(client, "Entanglement reading list")
    ids["other"] = await new_conversation(client, "Cooking")
    upstream.push(tokens=["Boil ", "water."])
    await ask(client, ids["other"], "How do I cook pasta?")
    return ids


async def test_search_finds_titles_and_messages_with_snippets(client_for, user, other_user, upstream):
    client = await client_for(user)
    ids = await seed_search(client, upstream)
    stranger = await client_for(other_user)
    hidden = await new_conversation(stranger, "Entanglement secrets")
    upstream.push(tokens=["entanglement ", "of ", "bob"])
    await ask(stranger, hidden, "entanglement?")

    status, body = await get_json(client, "/api/conversations/?q=ENTANGLEMENT")
    assert status == 200
    found = {c["id"]: c for c in body["conversations"]}
    assert list(found) == [ids["titled"], ids["physics"]]  # newest first; bob's and the cooking one absent
    assert found[ids["titled"]]["matches"] == []  # the title matched
    matches = found[ids["physics"]]["matches"]
    assert [m["message_id"] for m in matches] == [ids["question"], ids["answer"]]
    assert matches[0]["snippet"] == "Explain entanglement please"
    assert matches[1]["snippet"] == "Quantum entanglement links two particles."
    assert found[ids["physics"]]["title"] == "Physics homework"
    # A phrase, case-insensitively; and nothing for what no conversation says.
    _, body = await get_json(client, "/api/conversations/?q=two%20PARTICLES")
    assert [c["id"] for c in body["conversations"]] == [ids["physics"]]
    _, body = await get_json(client, "/api/conversations/?q=zebra")
    assert body["conversations"] == []


async def test_a_snippet_is_the_text_around_the_match_and_bounded(client_for, user, upstream):
    client = await client_for(user)
    cid = await new_conversation(client)
    long_text = " ".join(f"word{i}" for i in range(300)) + " needle " + " ".join(f"tail{i}" for i in range(300))
    upstream.push(tokens=["fine"])
    events = await ask(client, cid, long_text)
    _, body = await get_json(client, "/api/conversations/?q=needle")
    [match] = body["conversations"][0]["matches"]
    assert match["message_id"] == events[0].data["user_message_id"]
    snippet = match["snippet"]
    assert "needle" in snippet and len(snippet) <= 170
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "word299 needle tail0" in snippet


async def test_search_lists_at_most_three_matches_per_conversation(client_for, user, upstream):
    client = await client_for(user)
    cid = await new_conversation(client)
    for i in range(4):
        upstream.push(tokens=[f"reply {i}"])
        await ask(client, cid, f"repeat {i}")
    _, body = await get_json(client, "/api/conversations/?q=repeat")
    [found] = body["conversations"]
    assert [m["snippet"] for m in found["matches"]] == ["repeat 0", "repeat 1", "repeat 2"]


async def test_a_blank_query_lists_everything_and_a_long_one_is_refused(client_for, user):
    client = await client_for(user)
    first = await new_conversation(client, "one")
    second = await new_conversation(client, "two")
    _, body = await get_json(client, "/api/conversations/?q=%20%20")
    assert [c["id"] for c in body["conversations"]] == [second, first]
    assert "matches" not in body["conversations"][0]
    r = await client.get("/api/conversations/?q=" + "x" * 201)
    assert (r.status_code, error_code(r)) == (400, "query_too_long")


# --- the model list -------------------------------------------------------------------------------


async def test_the_model_list_comes_from_the_upstream_and_is_cached(client_for, user, upstream):
    client = await client_for(user)
    upstream.models = ["scripted", "other-model"]
    status, body = await get_json(client, "/api/models/?refresh=1")
    assert status == 200
    assert body == {
        "models": [{"id": "scripted-model"}, {"id": "scripted"}, {"id": "other-model"}],
        "default": "scripted-model",
    }
    asked = upstream.models_requests
    upstream.models = ["scripted", "other-model", "newer-model"]
    _, cached = await get_json(client, "/api/models/")
    assert cached == body and upstream.models_requests == asked  # from the cache, no request
    _, fresh = await get_json(client, "/api/models/?refresh=1")
    assert [m["id"] for m in fresh["models"]] == ["scripted-model", "scripted", "other-model", "newer-model"]
    assert upstream.models_requests == asked + 1


async def test_the_cache_expires(client_for, user, upstream, app_settings):
    app_settings.CHAT_MODELS_CACHE_S = 0.0
    client = await client_for(user)
    await get_json(client, "/api/models/")
    upstream.models = ["scripted", "later-model"]
    _, body = await get_json(client, "/api/models/")
    assert body["models"][-1] == {"id": "later-model"}


async def test_one_model_when_the_upstream_lists_only_the_default(client_for, user, upstream, app_settings):
    upstream.models = ["scripted-model"]
    client = await client_for(user)
    _, body = await get_json(client, "/api/models/?refresh=1")
    assert body == {"models": [{"id": "scripted-model"}], "default": "scripted-model"}


async def test_an_unreachable_upstream_is_a_503_that_names_no_address(client_for, user, app_settings):
    port = free_port()  # nothing listens there
    app_settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
    await llm.close_client()
    client = await client_for(user)
    r = await client.get("/api/models/")
    assert (r.status_code, error_code(r)) == (503, "upstream_unavailable")
    assert str(port) not in r.content.decode() and "127.0.0.1" not in r.content.decode()
    cid = await new_conversation(client)
    r = await patch(client, cid, {"model": "some-model"})
    assert (r.status_code, error_code(r)) == (503, "upstream_unavailable")
    assert (await patch(client, cid, {"model": "", "title": "defaults need no upstream"})).status_code == 200


async def test_an_upstream_failing_to_list_is_a_503_and_one_without_a_list_offers_the_default(
    client_for, user, upstream
):
    client = await client_for(user)
    upstream.models_status = 500
    r = await client.get("/api/models/?refresh=1")
    assert (r.status_code, error_code(r)) == (503, "upstream_unavailable")
    upstream.models_status = 404  # a server without GET /v1/models
    _, body = await get_json(client, "/api/models/?refresh=1")
    assert body == {"models": [{"id": "scripted-model"}], "default": "scripted-model"}


async def test_the_model_list_needs_a_login_and_only_get(client_for, user):
    r = await AsyncClient().get("/api/models/")  # nobody logged in
    assert (r.status_code, error_code(r)) == (401, "not_authenticated")
    logged_in = await client_for(user)
    r = await logged_in.post("/api/models/")
    assert (r.status_code, error_code(r)) == (405, "method_not_allowed")


# --- search on PostgreSQL (full-text) -------------------------------------------------------------


@pytest.fixture
def pg_app(upstream, tmp_path):
    name = f"chatsite_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {"OPENAI_BASE_URL": upstream.base_url, "DATABASE_URL": f"{SERVER}/{name}", **LIVE_ENV}
        with LiveApp(tmp_path, env) as app:
            yield app
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as db:
            db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_full_text_search_on_postgresql(pg_app, upstream):
    client = pg_app.new_client("quinn")
    physics = client.new_conversation("Physics homework")
    upstream.push(tokens=["Quantum ", "computing ", "uses ", "qubits; ", *[f"filler{i} " for i in range(80)]])
    with client.post_stream(physics, "Tell me about computers") as r:
        start = read_all(r)[0].data
    cooking = client.new_conversation("Quantum cooking")  # matches by its title only
    other = pg_app.new_client("rosa")
    hers = other.new_conversation("Rosa's quantum notes")
    with other.post_stream(hers, "quantum computing for rosa") as r:
        read_all(r)

    r = client.http.get("/api/conversations/", params={"q": "quant comp"})  # prefixes of every word
    assert r.status_code == 200
    found = r.json()["conversations"]
    assert [c["id"] for c in found] == [physics]  # "cooking" lacks "comp"; rosa's is hers
    [match] = found[0]["matches"]
    assert match["message_id"] == start["message_id"]
    assert match["snippet"].startswith("Quantum computing uses qubits")
    assert "<" not in match["snippet"] and len(match["snippet"]) <= 170  # plain text, bounded

    found = client.http.get("/api/conversations/", params={"q": "QUANTUM"}).json()["conversations"]
    assert [c["id"] for c in found] == [cooking, physics]
    assert found[0]["matches"] == [] and found[1]["matches"][0]["message_id"] == start["message_id"]
    found = client.http.get("/api/conversations/", params={"q": "computers"}).json()["conversations"]
    assert found[0]["matches"][0] == {"message_id": start["user_message_id"], "snippet": "Tell me about computers"}
    # Punctuation only, or what tsquery syntax would choke on: no error, and nothing odd found.
    for q in ("!!!", "a & | b", "'quantum'", "quantum:*"):
        r = client.http.get("/api/conversations/", params={"q": q})
        assert r.status_code == 200, (q, r.text)
    assert [
        c["id"] for c in client.http.get("/api/conversations/", params={"q": "'quantum'"}).json()["conversations"]
    ] == [
        cooking,
        physics,
    ]
