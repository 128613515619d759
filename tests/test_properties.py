"""Property tests (Hypothesis).

- What chat/sse.py encodes, the browser's parser (static/chat/js/sse.js, in Node) decodes to the
  same events, whatever the text and the ids, however the bytes are cut into chunks.
- No request body, content type or id makes an API endpoint answer 5xx; every error is JSON with
  a code and a message, and every accepted post streams its answer to the end.

Runs are reproducible: tests/conftest.py loads the derandomized "ci" Hypothesis profile unless
HYPOTHESIS_PROFILE=explore asks for new, and more, examples.
"""

import base64
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import sse
from tests.live import ROOT, ApiClient, read_all
from tests.test_isolation import ROUTES, url_of

# --- SSE: encoder (Python) -> bytes in any chunks -> the browser's parser (Node) ---------------------

# Any text without lone surrogates (they cannot be UTF-8), with line breaks and NUL well represented.
TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=["Cs"]),
        st.sampled_from(["\r", "\n", "\r\n", "\x00", "\ufeff", "\u2028", "\x85", "data: x\n\n", ": "]),
    ),
    max_size=40,
).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
EVENT = st.one_of(
    st.tuples(st.just("token"), st.fixed_dictionaries({"text": TEXT})),
    st.tuples(st.sampled_from(["start", "error", "done"]), st.dictionaries(TEXT, JSON, max_size=4)),
)
ID = st.integers(min_value=0, max_value=2**64)


@pytest.fixture(scope="module")
def browser_parser() -> Iterator[Callable[[list[bytes]], dict]]:
    """Feed byte chunks to static/chat/js/sse.js in one long-lived Node process; get what it parsed."""
    node = subprocess.Popen(
        ["node", str(ROOT / "tests" / "js" / "sse_feed.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )

    def parse(chunks: list[bytes]) -> dict:
        node.stdin.write(json.dumps({"chunks": [base64.b64encode(c).decode() for c in chunks]}) + "\n")
        node.stdin.flush()
        line = node.stdout.readline()
        assert line, f"the Node parser exited ({node.poll()})"
        return json.loads(line)

    yield parse
    node.stdin.close()
    node.wait(10)


@st.composite
def streams(draw) -> tuple[bytes, dict]:
    """An SSE body as the server sends it (retry, events, pings) and what a parser must find in it."""
    retry = draw(st.integers(min_value=0, max_value=10**9))
    body, expected = [sse.encode_retry(retry)], {"events": [], "retries": [retry], "comments": []}
    for seq, (name, data) in draw(st.lists(st.tuples(ID, EVENT), max_size=8)):
        if draw(st.booleans()):
            body.append(sse.PING)
            expected["comments"].append("ping")
        body.append(sse.encode_event(seq, name, data))
        expected["events"].append({"id": str(seq), "event": name, "data": data})
    return b"".join(body), expected


@st.composite
def chunked(draw, body: bytes) -> list[bytes]:
    """The body cut at any points: mid-line, mid-CRLF, mid-UTF-8 character; or byte by byte."""
    if draw(st.integers(0, 9)) == 0:
        return [body[i : i + 1] for i in range(len(body))]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(body)), max_size=16))))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


@settings(max_examples=settings().max_examples * 2)
@given(data=st.data())
def test_the_browser_parser_decodes_what_the_server_encodes_in_any_chunking(browser_parser, data):
    body, expected = data.draw(streams())
    got = browser_parser(data.draw(chunked(body)))
    assert got["retries"] == expected["retries"] and got["comments"] == expected["comments"]
    assert [(e["id"], e["event"]) for e in got["events"]] == [(e["id"], e["event"]) for e in expected["events"]]
    for parsed, sent in zip(got["events"], expected["events"], strict=True):
        assert "\n" not in parsed["data"] and "\r" not in parsed["data"]  # one data line per event
        assert json.loads(parsed["data"]) == sent["data"]


# --- the API: no body makes it fail --------------------------------------------------------------

# JSON of every kind, lone surrogates (as \\udXXX escapes) included; and dicts with the fields the
# endpoints read, so that some posts are accepted and really stream.
ANY_TEXT = st.text(st.characters(exclude_categories=[]), max_size=30)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=16,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(st.text(min_size=1, max_size=40), ANY_JSON),
        "title": st.one_of(st.text(max_size=40), ANY_JSON),
        "typing": ANY_JSON,
        "message_id": ANY_JSON,
    },
)
BODIES = st.one_of(
    st.one_of(ANY_JSON, FIELDS).map(lambda v: json.dumps(v).encode()),  # ensure_ascii: surrogates stay escaped
    FIELDS.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b"[" * 5000, b'{"content": "\\u0000"}', b"\xef\xbb\xbf{}", b"nul\x00l"]),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "application/octet-stream",
        None,
    ]
)
ENDPOINTS = [(row.route, method) for row in ROUTES if row.kind == "api" for method in row.methods]
# What HTTP allows in a header value: no control characters, no spaces at either end.
HEADER_VALUE = st.from_regex(r"[\x21-\x7e\xa0-\xff]([\x20-\x7e\xa0-\xff]{0,20}[\x21-\x7e\xa0-\xff])?", fullmatch=True)


@dataclass
class Fuzzer:
    client: ApiClient
    answer_id: int
    user_message_id: int


@pytest.fixture(scope="module")
def fuzzer(live, upstream_server) -> Fuzzer:
    """A user with a stored answer, whose ids the message endpoints are tried on."""
    client = live.new_client(f"fuzzer-{uuid.uuid4().hex[:6]}")
    upstream_server.reset()
    with client.post_stream(client.new_conversation(), "a first answer") as r:
        start = read_all(r)[0].data
    return Fuzzer(client, start["message_id"], start["user_message_id"])


def assert_json_error(r: httpx.Response) -> None:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    if r.status_code >= 300:
        assert r.headers["Content-Type"] == "application/json", r.text[:300]
        error = r.json()["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]


def refused_by_the_server(method: str, content_type: str | None, r: httpx.Response) -> bool:
    """Daphne's HTTP layer (Twisted) parses every POSTed multipart body before the app sees it, and
    answers a malformed one with a bare 400 (see test_bad_input.py)."""
    multipart = (content_type or "").startswith("multipart/form-data")
    return method == "POST" and multipart and r.status_code == 400 and "Content-Type" not in r.headers


@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=BODIES,
    content_type=CONTENT_TYPES,
    own_id=st.booleans(),
    other_id=st.one_of(st.integers(min_value=0, max_value=2**70), st.sampled_from([0, 1, 2**63 - 1, 2**63])),
    last_event_id=st.one_of(st.none(), st.integers(-5, 10**20).map(str), HEADER_VALUE),
    query=st.dictionaries(st.sampled_from(["last_event_id", "q", "path"]), ANY_TEXT, max_size=2),
)
def test_no_request_makes_the_api_fail(
    fuzzer, upstream_server, endpoint, body, content_type, own_id, other_id, last_event_id, query
):
    upstream_server.reset()
    upstream_server.default.tokens = 3
    client = fuzzer.client
    route, method = endpoint
    conversation_id = None
    if "<id:id>" not in route:
        url = url_of(route)
    elif "conversations/<id:id>" in route:
        conversation_id = client.new_conversation() if own_id else None
        url = url_of(route, conversation_id or other_id)
    else:
        url = url_of(route, (fuzzer.answer_id, fuzzer.user_message_id)[other_id % 2] if own_id else other_id)
    if query:  # percent-encoded UTF-8, lone surrogates too (invalid UTF-8 once decoded)
        url += "?" + "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in query.items())
    headers = {} if content_type is None else {"Content-Type": content_type}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id.encode("latin-1")
    with client.http.stream(method, url, content=body, headers=headers) as r:
        if r.headers.get("Content-Type") == "text/event-stream":
            events = read_all(r)
            assert r.status_code == 200 and events and events[-1].event == "done", events[-3:]
        elif not refused_by_the_server(method, content_type, r):
            r.read()
            assert_json_error(r)
    if conversation_id is not None and method != "DELETE":  # nothing half-stored: no question without answer
        messages = client.conversation(conversation_id)["messages"]
        assert len(messages) in (0, 2) and all(m["status"] != "streaming" for m in messages), messages
