"""Isolation: no user reads, streams, resumes, cancels, deletes or hears the typing of another user's
conversation, over HTTP or WebSocket; and nobody without a login gets anything.

This file is the one place that lists every endpoint. `ROUTES` and `SOCKET_ROUTES` say, for each
route the URL resolvers know, what another user (bob acting on alice's objects) gets;
`test_every_route_has_a_row` walks chatsite.urls and chat.routing and fails when a route or an
HTTP method has no row here. A new endpoint therefore needs a row (and so a test) to pass CI.

Everything runs against the real daphne process (tests/live.py): real sessions, CSRF, middleware.
"Nothing changed" is checked the way alice would notice: her conversation reads the same as
before, and her answer that was streaming still streams, to the end, and is stored as streamed.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from django.urls import URLPattern, URLResolver
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tests.live import ApiClient, EventStream, LiveApp, text_of

# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    route: str  # as the resolver spells it (prefixes joined): the walker matches on this
    methods: tuple[str, ...]  # every method the route serves; the walker compares with its Allow header
    kind: str  # "api" (JSON, 401 anonymous), "page" (302 anonymous), "public", "staff", "django"
    targets: tuple[str, ...]  # alice's objects bob aims at: conversation, live conversation, answer, ...
    result: str  # what bob gets, for docs/RELIABILITY.md


CONVERSATIONS = ("conversation", "live conversation")  # one with a stored answer, one still streaming
MESSAGES = ("answer", "live answer", "user message")

ROUTES = [
    Row("", ("GET",), "page", (), "his own empty page: nothing of alice's in it"),
    Row("c/<id:id>/", ("GET",), "page", CONVERSATIONS, "404"),
    Row("api/conversations/", ("GET", "POST"), "api", (), "GET lists his own only; POST makes his own"),
    Row("api/conversations/<id:id>/", ("GET", "PATCH", "DELETE"), "api", CONVERSATIONS, "404 not_found"),
    Row("api/conversations/<id:id>/messages/", ("POST",), "api", CONVERSATIONS, "404 not_found (never 409)"),
    Row("api/messages/<id:id>/stream/", ("GET",), "api", MESSAGES, "404 not_found (never 400 not_an_answer)"),
    Row("api/messages/<id:id>/cancel/", ("POST",), "api", MESSAGES, "404 not_found"),
    Row("api/messages/<id:id>/regenerate/", ("POST",), "api", MESSAGES, "404 not_found (never 409 or 400)"),
    Row("api/messages/<id:id>/edit/", ("POST",), "api", MESSAGES, "404 not_found (never 409 or 400)"),
    Row("api/messages/<id:id>/continue/", ("POST",), "api", MESSAGES, "404 not_found (never 409 or 400)"),
    Row("api/messages/<id:id>/feedback/", ("PUT", "DELETE"), "api", MESSAGES, "404 not_found (never 409 or 400)"),
    Row("api/models/", ("GET",), "api", (), "the upstream's model ids: nobody's data"),
    Row("^api/(?P<rest>.*)$", (), "api", (), "404 not_found for any method, anyone"),
    Row("healthz", ("GET", "HEAD"), "public", (), "200, no user data"),
    Row("readyz", ("GET", "HEAD"), "public", (), "200/503, no user data"),
    Row("metrics", ("GET", "HEAD"), "staff", (), "403 forbidden (not staff)"),
    Row("admin/", ("GET", "POST"), "django", CONVERSATIONS + MESSAGES, "302 to the admin login (not staff)"),
    Row("admin/chat/usage/", ("GET",), "django", (), "302 to the admin login (not staff)"),
    Row("accounts/", ("GET", "POST"), "django", (), "Django's auth views: only the session's own user"),
]
SOCKET_ROUTES = {
    "ws/conversations/<int:id>/": {
        "connect": "refused (403), like an unknown conversation",
        "cancel": "error frame not_found; the answer goes on",
        "typing": "never reaches the other user's sockets",
        "generation": "state frames never reach the other user's sockets",
    },
}
# Django's own URL sets: listed as a whole, each checked in its own test below.
WHOLE_INCLUDES = ("admin/", "accounts/")

NOT_FOUND_ID = 987_654_321


def url_of(route: str, id: int | None = None) -> str:
    return "/" + route.replace("<id:id>", str(id)).replace("<int:id>", str(id))


# --- the walker: a route without a row fails here -------------------------------------------------


def resolver_routes(patterns, prefix: str = "") -> Iterator[str]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route in WHOLE_INCLUDES:
                yield route
            else:
                yield from resolver_routes(entry.url_patterns, route)
        else:
            assert isinstance(entry, URLPattern)
            yield route


def test_every_route_has_a_row(live):
    """Every route chatsite.urls resolves, every method it serves and every WebSocket route has a row."""
    from chat.routing import websocket_urlpatterns
    from chatsite.urls import urlpatterns

    assert sorted(resolver_routes(urlpatterns)) == sorted(row.route for row in ROUTES)
    assert sorted(str(p.pattern) for p in websocket_urlpatterns) == sorted(SOCKET_ROUTES)
    for row in ROUTES:
        if row.kind in ("api", "public", "staff") and row.methods:
            # Our views answer a method they do not serve with 405 and the methods they do serve.
            r = httpx.options(live.base_url + url_of(row.route, 1))
            assert r.status_code == 405, row.route
            served = {m.strip() for m in r.headers["Allow"].split(",")}
            assert served == set(row.methods), f"{row.route} serves {served}: give each method a row"


# --- alice's world: a stored answer and a streaming one -------------------------------------------


class AlicesWorld:
    """Alice's conversation with a stored answer, and one whose answer is streaming right now."""

    def __init__(self, alice: ApiClient, upstream):
        self.alice = alice
        upstream.name("long", tokens=3000, rate=50)
        self.stored_cid = alice.new_conversation("stored")
        with alice.post_stream(self.stored_cid, "remember this") as r:
            stored_events = EventStream(r).events()
        assert stored_events[-1].data["status"] == "complete"
        self.stored_answer = stored_events[0].data["message_id"]
        self.user_message = stored_events[0].data["user_message_id"]
        self.live_cid = alice.new_conversation("live")
        self._response = alice.http.send(
            alice.http.build_request(
                "POST", f"/api/conversations/{self.live_cid}/messages/", json={"content": "[script:long]"}
            ),
            stream=True,
        )
        self._stream = EventStream(self._response)
        self.seen = self._stream.events(limit=3)
        self.live_answer = self.seen[0].data["message_id"]
        self.before = self.snapshot()

    def target(self, name: str) -> int:
        return {
            "conversation": self.stored_cid,
            "live conversation": self.live_cid,
            "answer": self.stored_answer,
            "live answer": self.live_answer,
            "user message": self.user_message,
        }[name]

    def snapshot(self) -> dict:
        live = self.alice.conversation(self.live_cid)
        for message in live["messages"]:  # the streaming answer grows: compare what must not change
            if message["role"] == "assistant":
                for key in ("content", "stats", "last_event_id"):
                    message.pop(key, None)
        listed = self.alice.http.get("/api/conversations/").json()["conversations"]
        return {"stored": self.alice.conversation(self.stored_cid), "live": live, "listed": listed}

    def assert_unchanged(self) -> None:
        """Alice sees what she saw, and her streaming answer still streams, to the end she chooses."""
        now = self.snapshot()
        assert now["stored"] == self.before["stored"]
        assert now["live"]["messages"][-1]["status"] == "streaming"
        assert now["live"] == self.before["live"]
        assert {c["id"] for c in now["listed"]} >= {self.stored_cid, self.live_cid}
        more = self._stream.events(limit=2)
        assert [e.event for e in more] == ["token", "token"], "alice's answer stopped streaming"
        self.seen += more
        self.finish()
        assert self.alice.answer(self.live_cid)["content"] == text_of(self.seen)

    def finish(self) -> None:
        if self._response.is_closed:
            return
        assert self.alice.cancel(self.live_answer).json() == {"status": "cancelled"}
        self.seen += self._stream.events()
        assert self.seen[-1].data["status"] == "cancelled"
        self._response.close()


@pytest.fixture(scope="module")
def alice(live) -> ApiClient:
    """Logged in once for the module (a login hashes the password: slow on purpose)."""
    return live.client("alice")


@pytest.fixture(scope="module")
def bob(live) -> ApiClient:
    return live.client("bob")


@pytest.fixture
def world(alice, upstream) -> Iterator[AlicesWorld]:
    world = AlicesWorld(alice, upstream)
    yield world
    world.finish()


def anonymous(live: LiveApp) -> httpx.Client:
    """No login, but a CSRF token: what is left to refuse the request is the missing login."""
    http = httpx.Client(base_url=live.base_url, timeout=10)
    http.get("/accounts/login/")
    http.headers["X-CSRFToken"] = http.cookies["csrftoken"]
    return http


def error_of(r: httpx.Response) -> str:
    assert r.headers["Content-Type"] == "application/json", r.text[:200]
    return r.json()["error"]["code"]


# --- HTTP: bob on alice's objects -----------------------------------------------------------------

CASES = [
    pytest.param(row, method, target, id=f"{method} {row.route} {target}")
    for row in ROUTES
    if row.kind in ("api", "page")
    for method in row.methods
    for target in row.targets
]


def bob_does(bob: ApiClient, method: str, url: str) -> httpx.Response:
    body = {"content": "mine now", "title": "mine now"} if method in ("POST", "PATCH") else None
    return bob.http.request(method, url, json=body)


@pytest.mark.parametrize(("row", "method", "target"), CASES)
def test_bob_gets_404_for_alices_objects_and_alice_sees_no_change(world, bob, row, method, target):
    r = bob_does(bob, method, url_of(row.route, world.target(target)))
    assert r.status_code == 404, r.text[:300]
    # Exactly what a nonexistent id gets: the answer does not even tell that the object exists.
    unknown = bob_does(bob, method, url_of(row.route, NOT_FOUND_ID))
    assert r.status_code == unknown.status_code
    if row.kind == "api":  # (a page's 404 under DEBUG quotes the path: only the API's bodies compare)
        assert error_of(r) == "not_found" and r.content == unknown.content
    world.assert_unchanged()


def test_bobs_list_his_page_and_his_new_conversation_show_nothing_of_alices(world, bob):
    listed = bob.http.get("/api/conversations/").json()["conversations"]
    assert {c["id"] for c in listed}.isdisjoint({world.stored_cid, world.live_cid})
    for q in ("remember this", "remember"):  # the words of her stored exchange: no match for him
        assert bob.http.get("/api/conversations/", params={"q": q}).json()["conversations"] == []
        hers = world.alice.http.get("/api/conversations/", params={"q": q}).json()["conversations"]
        assert world.stored_cid in {c["id"] for c in hers}  # (the search does find it, for her)
    r = bob.http.post("/api/conversations/", json={"title": "bob's"})
    assert r.status_code == 201 and r.json()["id"] not in (world.stored_cid, world.live_cid)
    page = bob.http.get("/")
    assert page.status_code == 200 and "remember this" not in page.text
    world.assert_unchanged()


def test_unknown_api_urls_are_404_for_everyone(live, alice, bob):
    for client in (alice.http, bob.http, anonymous(live)):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            r = client.request(method, "/api/conversations/1/secret/")
            assert (r.status_code, error_of(r)) == (404, "not_found")


def test_staff_pages_and_admin_refuse_bob(world, bob):
    metrics = bob.http.get("/metrics")
    assert (metrics.status_code, error_of(metrics)) == (403, "forbidden")
    for url in [
        "/admin/",
        f"/admin/chat/conversation/{world.stored_cid}/change/",
        f"/admin/chat/conversation/{world.live_cid}/delete/",
        f"/admin/chat/message/{world.stored_answer}/change/",
        f"/admin/chat/message/{world.user_message}/change/",
        "/admin/chat/conversation/",
    ]:
        r = bob.http.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/admin/login/"), url
    world.assert_unchanged()


def test_probes_tell_nothing_about_users(world, live):
    for url in ("/healthz", "/readyz"):
        r = httpx.get(live.base_url + url)
        assert r.status_code in (200, 503) and "remember this" not in r.text and "stored" not in r.text


# --- anonymous ------------------------------------------------------------------------------------

ANONYMOUS_CASES = [
    pytest.param(row, method, id=f"{method} {row.route}")
    for row in ROUTES
    if row.kind in ("api", "page")
    for method in row.methods
]


@pytest.mark.parametrize(("row", "method"), ANONYMOUS_CASES)
def test_anonymous_gets_401_json_or_the_login_page(world, live, row, method):
    http = anonymous(live)
    target = world.target(row.targets[0]) if row.targets else None
    r = http.request(method, url_of(row.route, target), json={"content": "x"} if method == "POST" else None)
    if row.kind == "api":
        assert (r.status_code, error_of(r)) == (401, "not_authenticated")
    else:
        assert r.status_code == 302 and r.headers["Location"].startswith("/accounts/login/")
    world.assert_unchanged()


def test_anonymous_django_views_ask_for_a_login(live):
    http = anonymous(live)
    assert http.get("/accounts/password_change/").headers["Location"].startswith("/accounts/login/")
    assert http.get("/admin/chat/conversation/").headers["Location"].startswith("/admin/login/")
    metrics = http.get("/metrics")
    assert (metrics.status_code, error_of(metrics)) == (401, "not_authenticated")


# --- WebSocket ------------------------------------------------------------------------------------


def socket(live: LiveApp, client: ApiClient | None, conversation_id: int):
    headers = {"Cookie": f"sessionid={client.http.cookies['sessionid']}"} if client else {}
    return ws_connect(
        live.base_url.replace("http://", "ws://") + f"/ws/conversations/{conversation_id}/",
        origin=live.base_url,
        additional_headers=headers,
        open_timeout=5,
    )


def silent(ws, seconds: float = 0.5) -> bool:
    try:
        frame = ws.recv(timeout=seconds)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected frame {frame}")


def next_frame(ws, timeout: float = 5) -> dict:
    return json.loads(ws.recv(timeout=timeout))


@pytest.mark.parametrize("target", CONVERSATIONS)
def test_bob_cannot_open_a_socket_on_alices_conversation(world, live, bob, target):
    for who in (bob, None):
        for conversation_id in (world.target(target), NOT_FOUND_ID):  # the same refusal either way
            with pytest.raises(InvalidStatus) as refused:
                socket(live, who, conversation_id)
            assert refused.value.response.status_code == 403
    world.assert_unchanged()


def test_a_cancel_frame_for_alices_answer_is_an_error_and_the_answer_goes_on(world, live, bob):
    bobs = bob.new_conversation()
    with socket(live, bob, bobs) as ws:
        for message_id in (world.live_answer, world.stored_answer, world.user_message, NOT_FOUND_ID):
            ws.send(json.dumps({"type": "cancel", "message_id": message_id}))
            frame = next_frame(ws)
            assert (frame["type"], frame["code"]) == ("error", "not_found")
            assert frame["message"] == f"No answer {message_id} in this conversation."
    # Alice herself, from another of her conversations' socket: refused too (the socket's conversation only).
    other = world.alice.new_conversation()
    with socket(live, world.alice, other) as ws:
        ws.send(json.dumps({"type": "cancel", "message_id": world.live_answer}))
        assert next_frame(ws)["code"] == "not_found"
    world.assert_unchanged()


def test_typing_and_answer_states_never_reach_another_users_socket(world, live, bob):
    bobs = bob.new_conversation()
    with (
        socket(live, world.alice, world.live_cid) as alice_tab,
        socket(live, world.alice, world.live_cid) as alice_other_tab,
        socket(live, bob, bobs) as bob_tab,
        socket(live, bob, bobs) as bob_other_tab,
    ):
        bob_tab.send(json.dumps({"type": "typing", "typing": True}))
        # It works (bob's other tab hears it), and alice's tabs hear nothing.
        assert next_frame(bob_other_tab) == {"type": "typing", "user": "bob", "typing": True}
        assert silent(alice_tab) and silent(alice_other_tab, 0.05)
        alice_tab.send(json.dumps({"type": "typing", "typing": True}))
        assert next_frame(alice_other_tab) == {"type": "typing", "user": "alice", "typing": True}
        assert silent(bob_tab) and silent(bob_other_tab, 0.05)
        world.assert_unchanged()  # alice stops her answer: her tabs are told, bob's are not
        state = next_frame(alice_other_tab)
        assert (state["type"], state["message_id"], state["state"]) == ("generation", world.live_answer, "cancelled")
        assert silent(bob_tab) and silent(bob_other_tab, 0.05)
