"""The relay's fast path: what a request costs the server.

- Django's handler runs each request's sync work on a few long-lived threads, and Django's own
  middleware on the event loop (chat/handler.py, chat/middleware.py): a JSON request takes a
  handful of thread hops, not one per middleware hook, and no thread is started per request;
  the middleware still does its job (CSRF, framing, CSP).
"""

import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.test import AsyncClient

from chat import handler as chat_handler


def http_scope(method: str, path: str, cookie: str, headers: tuple = ()) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode()), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


async def call(app, scope: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    start = await communicator.receive_output(10)
    content = b""
    while True:
        message = await communicator.receive_output(10)
        content += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(10)
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, content


async def session_cookie(user) -> str:
    client = AsyncClient()
    await client.aforce_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def hops() -> int:
    return sum(lane.submitted for lane in chat_handler.lanes())


@pytest.mark.django_db(transaction=True)
async def test_json_requests_take_a_few_thread_hops_on_long_lived_threads(user):
    cookie = await session_cookie(user)
    app = chat_handler.PinnedASGIHandler()

    for _ in range(len(chat_handler.lanes())):  # each lane's thread starts on its first call
        status, headers, _ = await call(app, http_scope("GET", "/api/conversations/", cookie))
        assert status == 200
    threads_after_first = threading.active_count()
    before = hops()
    for _ in range(20):
        status, headers, body = await call(app, http_scope("GET", "/api/conversations/", cookie))
        assert status == 200 and body.startswith(b'{"conversations"')
    # request_started, the session and the user, the view's query, response.close: about four
    # hops a request. Django's own middleware in threads took thirteen more.
    assert hops() - before <= 20 * 5
    # No thread started per request: the same few serve them all.
    assert threading.active_count() == threads_after_first
    assert len({t.name for t in threading.enumerate() if t.name.startswith("sync-")}) <= settings.CHAT_SYNC_THREADS
    # The middleware on the loop still does its work.
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in headers


@pytest.mark.django_db(transaction=True)
async def test_csrf_is_still_enforced_by_the_middleware_on_the_loop(user):
    cookie = await session_cookie(user)
    app = chat_handler.PinnedASGIHandler()
    json_type = ((b"content-type", b"application/json"),)

    status, _, body = await call(app, http_scope("POST", "/api/conversations/", cookie, json_type), b"{}")
    assert status == 403 and b'"csrf_failed"' in body

    token = "k" * 32
    with_token = (*json_type, (b"x-csrftoken", token.encode()))
    status, _, body = await call(
        app, http_scope("POST", "/api/conversations/", f"{cookie}; csrftoken={token}", with_token), b"{}"
    )
    assert status == 201, body
