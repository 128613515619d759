"""Bad input: every odd body, header, id or frame gets a clear JSON error (or is rightly accepted),
and nothing is half-stored; never a 500. On SQLite and on PostgreSQL (which refuses NUL in text).

The table of what each input gets is in docs/RELIABILITY.md ("Bad input and isolation").
"""

import json
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from chat import sse
from tests.conftest import LIVE_ENV
from tests.live import ApiClient, EventStream, LiveApp, read_all, text_of

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
# str.isdigit() takes these for digits (int() too, all but the superscript); no client sends them as ids.
FULLWIDTH_12, ARABIC_INDIC_3, ARABIC_INDIC_12 = "\uff11\uff12", "\u0663", "\u0661\u0662"
SUPERSCRIPT_2, DOUBLE_STRUCK_1 = "\u00b2", "\U0001d7d9"
MB = 1_000_000
# Django's default DATA_UPLOAD_MAX_MEMORY_SIZE is 2.5 MiB.
OVER_BODY_LIMIT = 2_621_440 + 1


@pytest.fixture(scope="module")
def postgres_app(upstream_server, tmp_path_factory) -> Iterator[LiveApp]:
    name = f"chatsite_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    env = {"OPENAI_BASE_URL": upstream_server.base_url, "DATABASE_URL": f"{PG_SERVER}/{name}", **LIVE_ENV}
    with LiveApp(tmp_path_factory.mktemp("pg"), env) as app:
        yield app
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


_users: dict[str, ApiClient] = {}


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, upstream) -> LiveApp:
    """The app on either database; both serve the same answers."""
    return request.getfixturevalue("live" if request.param == "sqlite" else "postgres_app")


@pytest.fixture
def user(app) -> ApiClient:
    """A user of this app (one per app: making one takes a while)."""
    if app.base_url not in _users:
        _users[app.base_url] = app.new_client(f"odd-{uuid.uuid4().hex[:6]}")
    return _users[app.base_url]


@pytest.fixture
def cid(user) -> int:
    """A new, empty conversation of the user's."""
    return user.new_conversation()


def post(client: ApiClient, url: str, body: bytes | str, content_type: str = "application/json") -> httpx.Response:
    return client.http.post(url, content=body, headers={"Content-Type": content_type})


def error_of(r: httpx.Response) -> tuple[int, str]:
    assert r.headers["Content-Type"] == "application/json", (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    return r.status_code, error["code"]


def assert_nothing_stored(client: ApiClient, cid: int, upstream) -> None:
    """The conversation is as it was (empty), no question went upstream, and it still works."""
    assert client.conversation(cid)["messages"] == []
    assert upstream.records == []
    upstream.push(tokens=["still ", "fine"])
    with client.post_stream(cid, "and now a real question") as r:
        assert text_of(read_all(r)) == "still fine"


# --- message content and titles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"content": "a\x00b"}, (400, "invalid_content"), id="NUL"),
        pytest.param({"content": "\x00"}, (400, "invalid_content"), id="only NUL"),
        pytest.param(b'{"content": "lone \\ud800 high"}', (400, "invalid_json"), id="lone high surrogate"),
        pytest.param(b'{"content": "lone \\udfff low"}', (400, "invalid_json"), id="lone low surrogate"),
        pytest.param(b'{"content": "ok", "x": ["\\udc00"]}', (400, "invalid_json"), id="surrogate elsewhere"),
        pytest.param({"content": "x" * MB}, (413, "content_too_long"), id="1 MB paste"),
        pytest.param({"content": "x" * OVER_BODY_LIMIT}, (413, "body_too_large"), id="over the body limit"),
        pytest.param("[" * 100_000, (400, "invalid_json"), id="100000 ["),
        pytest.param("[" * 100_000 + "]" * 100_000, (400, "invalid_json"), id="100000 nested lists"),
        pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, (400, "invalid_json"), id="100000 nested objects"),
        pytest.param("[]", (400, "invalid_json"), id="a list"),
        pytest.param('"content"', (400, "invalid_json"), id="a string"),
        pytest.param("null", (400, "invalid_json"), id="null"),
        pytest.param("12", (400, "invalid_json"), id="a number"),
        pytest.param(b"\xff\xfe{", (400, "invalid_json"), id="not UTF-8"),
        pytest.param({"content": None}, (400, "content_required"), id="content null"),
        pytest.param({"content": {"text": "hi"}}, (400, "invalid_content"), id="content an object"),
    ],
)
def test_bad_message_bodies_get_a_json_error_and_store_nothing(app, user, cid, upstream, body, expected):
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    r = post(user, f"/api/conversations/{cid}/messages/", raw)
    assert error_of(r) == expected
    assert_nothing_stored(user, cid, upstream)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"title": "a\x00b"}, (400, "invalid_title"), id="NUL"),
        pytest.param(b'{"title": "\\ud800"}', (400, "invalid_json"), id="lone surrogate"),
        pytest.param("[" * 100_000, (400, "invalid_json"), id="100000 ["),
        pytest.param("[]", (400, "invalid_json"), id="a list"),
    ],
)
def test_bad_titles_get_a_json_error_and_make_no_conversation(app, user, body, expected):
    before = user.http.get("/api/conversations/").json()
    r = post(user, "/api/conversations/", body if isinstance(body, (str, bytes)) else json.dumps(body))
    assert error_of(r) == expected
    assert user.http.get("/api/conversations/").json() == before


@pytest.mark.parametrize(
    ("data", "files"),
    [
        pytest.param({"content": "hi"}, None, id="form-encoded"),
        pytest.param({"content": "hi"}, {"f": b"x"}, id="multipart"),
        pytest.param(None, {"f": b"x" * OVER_BODY_LIMIT}, id="multipart 2.5 MB file"),
    ],
)
def test_form_bodies_are_415(app, user, cid, upstream, data, files):
    r = user.http.post(f"/api/conversations/{cid}/messages/", data=data, files=files)
    assert error_of(r) == (415, "unsupported_media_type")
    assert_nothing_stored(user, cid, upstream)


def test_a_malformed_multipart_post_is_refused_by_the_server_itself(app, user, cid, upstream):
    """Twisted (daphne's HTTP layer) parses a POSTed multipart body before any of our code runs, and
    answers one it cannot parse with a bare 400 and a closed connection: not JSON, but no damage."""
    r = post(user, f"/api/conversations/{cid}/messages/", b'{"content": "hi"}', "multipart/form-data; boundary=x")
    assert (r.status_code, r.content, r.headers.get("Content-Type")) == (400, b"", None)
    assert_nothing_stored(user, cid, upstream)


@pytest.fixture(scope="module")
def production_app(upstream_server, tmp_path_factory) -> Iterator[LiveApp]:
    """DEBUG off: Django answers a request it refuses in middleware through handler400, not its debug page."""
    env = {"OPENAI_BASE_URL": upstream_server.base_url, "DJANGO_DEBUG": "0", **LIVE_ENV}
    env["DJANGO_SECRET_KEY"] = uuid.uuid4().hex * 2
    with LiveApp(tmp_path_factory.mktemp("production"), env) as app:
        yield app


def session_of(app: LiveApp, username: str) -> ApiClient:
    """A new user's session, made on the server: without DEBUG the login page needs collected static
    files, which these tests do without. Any well-formed CSRF secret will do as cookie and header."""
    key = app.manage(
        "shell",
        "-c",
        "from django.contrib import auth; from django.contrib.sessions.backends.db import SessionStore; "
        f"user = auth.get_user_model().objects.create_user({username!r}); session = SessionStore(); "
        "session.update({auth.SESSION_KEY: str(user.pk), auth.HASH_SESSION_KEY: user.get_session_auth_hash(), "
        "auth.BACKEND_SESSION_KEY: 'django.contrib.auth.backends.ModelBackend'}); session.create(); "
        "print(session.session_key)",
    ).split()[-1]  # the shell may say more first
    token = "c" * 32
    http = httpx.Client(base_url=app.base_url, cookies={"sessionid": key, "csrftoken": token}, timeout=30)
    http.headers["X-CSRFToken"] = token
    return ApiClient(http)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"content": "x" * OVER_BODY_LIMIT}, (413, "body_too_large"), id="form 2.5 MB"),
        pytest.param({f"f{i}": "1" for i in range(1001)}, (400, "bad_request"), id="form 1001 fields"),
    ],
)
def test_forms_that_middleware_refuses_are_json_errors_too(production_app, upstream, data, expected):
    """The CSRF check reads a POSTed form before any view runs: too big, or too many fields, fail there."""
    client = session_of(production_app, f"form-{uuid.uuid4().hex[:6]}")
    cid = client.new_conversation()
    r = client.http.post(f"/api/conversations/{cid}/messages/", data=data)
    assert error_of(r) == expected
    assert_nothing_stored(client, cid, upstream)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=utf-8", ""])
def test_a_json_body_is_read_as_json_whatever_its_content_type_says(app, user, cid, upstream, content_type):
    upstream.push(tokens=["ok"])
    r = post(user, f"/api/conversations/{cid}/messages/", json.dumps({"content": "hi"}), content_type)
    assert r.status_code == 200 and text_of(read_all(r)) == "ok"
    assert [m["content"] for m in user.conversation(cid)["messages"]] == ["hi", "ok"]


UNUSUAL = {
    "RTL marks": "\u202b\u05e9\u05dc\u05d5\u05dd\u202c \u200f\u05de\u05d4?\u200f \u2067abc\u2069 \u061c",
    "combining": "e\u0301 = \u00e9? Z\u0351\u0352\u0353 \u1e9b\u0323 a\u0308\u0304 \u0915\u094d\u0937",
    "astral": "\U0001f469\U0001f3fd\u200d\U0001f4bb \U0001f1eb\U0001f1f7 \U0001d518\U0001d52b \U0010fffd",
    "controls": "tab\there\r\nCRLF \x1b[31mred\x7f \u2028\u2029 \ufeffBOM",
}


@pytest.mark.parametrize("text", UNUSUAL.values(), ids=UNUSUAL.keys())
def test_unusual_text_is_stored_and_streamed_back_byte_exact(app, user, cid, upstream, text):
    """Sent upstream, stored and streamed as is: no normalisation (NFC would merge e + U+0301)."""
    # The answer repeats the text split after every code point, so a combining mark or a half of a
    # flag travels in its own token event.
    upstream.push(tokens=list(text))
    with user.post_stream(cid, text) as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == text
    assert upstream.last().prompt[-1] == {"role": "user", "content": text}
    question, answer = user.conversation(cid)["messages"]
    assert question["content"].encode() == text.encode() == answer["content"].encode()
    with user.resume_stream(events[0].data["message_id"]) as r:  # replayed from the database
        assert text_of(read_all(r)) == text


def test_nul_in_the_models_answer_becomes_a_replacement_character(app, user, cid, upstream):
    """PostgreSQL cannot store NUL: an answer holding one could not be saved and stayed "streaming",
    blocking the conversation. It is U+FFFD on the stream and in the database alike."""
    upstream.push(tokens=["a\x00b", "\x00", "c"])
    with user.post_stream(cid, "say NUL") as r:
        events = read_all(r)
    assert events[-1].data["status"] == "complete"
    assert text_of(events) == user.answer(cid)["content"] == "a\ufffdb\ufffdc"
    upstream.push(tokens=["next"])
    with user.post_stream(cid, "and then?") as r:
        assert text_of(read_all(r)) == "next"


def test_an_escaped_surrogate_pair_is_one_character(app, user, cid, upstream):
    upstream.push(tokens=["ok"])
    r = post(user, f"/api/conversations/{cid}/messages/", b'{"content": "\\ud83d\\ude00"}')
    assert r.status_code == 200 and text_of(read_all(r)) == "ok"
    assert user.conversation(cid)["messages"][0]["content"] == "😀"


# --- ids that are not (small) numbers ------------------------------------------------------------

ODD_IDS = [
    "abc",
    "1.5",
    "-1",
    FULLWIDTH_12,
    ARABIC_INDIC_3,
    "%20",
    "1e3",
    "0x10",
    "99999999999999999999999",
    str(2**63),
]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_ids_in_urls_are_404_json(app, user, cid, odd):
    for method, url in [
        ("GET", f"/api/conversations/{odd}/"),
        ("DELETE", f"/api/conversations/{odd}/"),
        ("POST", f"/api/conversations/{odd}/messages/"),
        ("GET", f"/api/messages/{odd}/stream/"),
        ("POST", f"/api/messages/{odd}/cancel/"),
    ]:
        r = user.http.request(method, url, json={"content": "x"} if method == "POST" else None)
        assert error_of(r) == (404, "not_found"), (method, url)
    assert user.http.get(f"/c/{odd}/").status_code == 404
    assert user.conversation(cid)["messages"] == []


def socket(app: LiveApp, client: ApiClient, path: str):
    return ws_connect(
        app.base_url.replace("http://", "ws://") + path,
        origin=app.base_url,
        additional_headers={"Cookie": f"sessionid={client.http.cookies['sessionid']}"},
        open_timeout=5,
    )


@pytest.mark.parametrize(
    ("message_id", "code"),
    [
        ("12", "invalid_message_id"),
        (1.5, "invalid_message_id"),
        (True, "invalid_message_id"),
        (None, "invalid_message_id"),
        ([1], "invalid_message_id"),
        ({"id": 1}, "invalid_message_id"),
        (-1, "not_found"),
        (0, "not_found"),
        (10**30, "not_found"),
        (2**63, "not_found"),
        (-(2**63) - 1, "not_found"),
    ],
)
def test_odd_websocket_message_ids_get_error_frames_and_the_socket_stays_open(app, user, cid, message_id, code):
    with socket(app, user, f"/ws/conversations/{cid}/") as ws:
        ws.send(json.dumps({"type": "cancel", "message_id": message_id}))
        frame = json.loads(ws.recv(timeout=5))
        assert (frame["type"], frame["code"]) == ("error", code) and frame["message"]
        ws.send(json.dumps({"type": "cancel", "message_id": 1}))  # still open, still answering
        assert json.loads(ws.recv(timeout=5))["type"] == "error"


@pytest.mark.parametrize("odd", ["99999999999999999999999", str(2**63), "0"])
def test_a_websocket_on_an_odd_conversation_id_is_refused(app, user, odd):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        socket(app, user, f"/ws/conversations/{odd}/")
    assert refused.value.response.status_code == 403


# --- Last-Event-ID -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "99999999999999999999999",
        "-1",
        "1e3",
        FULLWIDTH_12,
        ARABIC_INDIC_3,
        "1 2",
        "0x1",
        "+1",
        "1.0",
        SUPERSCRIPT_2,
        DOUBLE_STRUCK_1,
    ],
)
def test_parse_last_event_id_accepts_ascii_digits_only(value):
    with pytest.raises(ValueError):
        sse.parse_last_event_id(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (" ", None), ("0", 0), ("007", 7), (" 12\t", 12), ("9" * 18, 10**18 - 1)],
)
def test_parse_last_event_id_reads_what_a_client_may_send(value, expected):
    assert sse.parse_last_event_id(value) == expected


@pytest.fixture
def answer(user, cid, upstream) -> tuple[ApiClient, list]:
    """A stored answer of at least five events (start, tokens, done)."""
    upstream.push(tokens=["a", "b", "c", "d"], rate=20)
    with user.post_stream(cid, "four tokens") as r:
        events = read_all(r)
    assert len(events) >= 5 and events[-1].data["status"] == "complete"
    return user, events


@pytest.mark.parametrize(
    "value",
    ["99999999999999999999999", "-1", "1e3", FULLWIDTH_12, ARABIC_INDIC_3, "1 2", "abc", "1.5", ARABIC_INDIC_12],
)
@pytest.mark.parametrize("where", ["header", "query"])
def test_bad_last_event_ids_are_400(app, answer, value, where):
    client, events = answer
    url = f"/api/messages/{events[0].data['message_id']}/stream/"
    if where == "header":
        r = client.http.get(url, headers={"Last-Event-ID": value.encode()})  # UTF-8 bytes on the wire
    else:
        r = client.http.get(url, params={"last_event_id": value})
    assert error_of(r) == (400, "invalid_last_event_id")


@pytest.mark.parametrize(("value", "after"), [(" 3 ", 3), ("\t3", 3), ("0", 0), ("", 0), ("000002", 2)])
def test_odd_but_valid_last_event_ids_replay_from_there(app, answer, value, after):
    client, events = answer
    with client.http.stream(
        "GET", f"/api/messages/{events[0].data['message_id']}/stream/", params={"last_event_id": value}
    ) as r:
        replayed = read_all(r)
    assert [(e.id, e.event, e.data) for e in replayed] == [(e.id, e.event, e.data) for e in events if e.id > after]


def test_an_id_past_the_end_gets_done_again_and_harms_nothing(app, user, cid, upstream):
    """The largest id accepted (18 digits), stored answer and live: only `done`, numbered after it."""
    huge = 10**18 - 1
    upstream.push(tokens=20, rate=40)  # about half a second
    with user.post_stream(cid, "going") as live:
        stream = EventStream(live)
        start = stream.events(limit=1)[0]
        answer_id = start.data["message_id"]
        with user.resume_stream(answer_id, huge) as r:  # while it streams: waits for the end
            resumed = read_all(r)
        events = [start, *stream.events()]
    assert [(e.id, e.event) for e in resumed] == [(huge + 1, "done")]
    assert resumed[0].data == events[-1].data and events[-1].data["status"] == "complete"
    with user.resume_stream(answer_id, huge) as r:  # and once stored
        assert [(e.id, e.event, e.data) for e in read_all(r)] == [(huge + 1, "done", events[-1].data)]
    assert user.answer(cid)["content"] == text_of(events) == "".join(f"w{i} " for i in range(20))
    with user.resume_stream(answer_id) as r:  # the whole answer is still there, ids as before
        assert [(e.id, e.data) for e in read_all(r)] == [(e.id, e.data) for e in events]
