"""The conversation WebSocket in-process: WebsocketCommunicator through the real middleware stack."""

import asyncio
import json

import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator

from chat.models import Conversation, Message
from chat.routing import websocket_urlpatterns
from tests.live import Event, free_port, iter_sse

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"
# The same stack as chatsite/asgi.py's "websocket" route.
application = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


@pytest.fixture
async def socket_for(client_for):
    """Open WebSockets as a user (or anonymous); every one is disconnected at teardown."""
    opened: list[WebsocketCommunicator] = []

    async def connect(user, conversation_id: int, origin: bytes | None = ORIGIN) -> tuple[WebsocketCommunicator, bool]:
        headers = [(b"origin", origin)] if origin else []
        if user is not None:
            client = await client_for(user)
            headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
        communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
        connected, _ = await communicator.connect()
        opened.append(communicator)
        return communicator, connected

    yield connect
    for communicator in opened:
        try:
            await communicator.disconnect()
        except Exception:  # a test already closed it
            pass


async def conversation_of(user) -> int:
    return (await Conversation.objects.acreate(owner=user)).pk


async def frames_until(communicator: WebsocketCommunicator, predicate, limit: int = 20) -> list[dict]:
    frames = []
    for _ in range(limit):
        frames.append(await communicator.receive_json_from(timeout=5))
        if predicate(frames[-1]):
            return frames
    raise AssertionError(f"no matching frame in {frames}")


async def post_message(client, conversation_id: int, content: str):
    return await client.post(
        f"/api/conversations/{conversation_id}/messages/",
        json.dumps({"content": content}),
        content_type="application/json",
    )


async def events_of(response) -> list[Event]:
    body = b"".join([chunk async for chunk in response.streaming_content])
    return [e for e in iter_sse(iter(body.decode().split("\n"))) if isinstance(e, Event)]


# --- who may connect -------------------------------------------------------------------------


# Anonymous and other users' sockets, cancels and typing: the isolation table, tests/test_isolation.py.


async def test_the_owner_connects(socket_for, user):
    _, connected = await socket_for(user, await conversation_of(user))
    assert connected


async def test_a_foreign_or_missing_origin_is_refused(socket_for, user):
    cid = await conversation_of(user)
    assert not (await socket_for(user, cid, origin=b"https://evil.example"))[1]
    assert not (await socket_for(user, cid, origin=None))[1]


# --- bad frames: an error frame, and the socket stays open -----------------------------------


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(socket_for, user):
    socket, _ = await socket_for(user, await conversation_of(user))
    bad = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "unknown_type"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"no_type": 1}', "unknown_type"),
        ('{"type": "typing", "typing": "yes"}', "invalid_typing"),
        ('{"type": "cancel"}', "invalid_message_id"),
        ('{"type": "cancel", "message_id": "7"}', "invalid_message_id"),
        ('{"type": "cancel", "message_id": true}', "invalid_message_id"),
        ('{"type": "cancel", "message_id": 99999}', "not_found"),
        (json.dumps({"type": "typing", "typing": True, "pad": "x" * 5000}), "frame_too_large"),
    ]
    for text, code in bad:
        await socket.send_to(text_data=text)
        frame = await socket.receive_json_from(timeout=5)
        assert frame["type"] == "error" and frame["code"] == code, (text, frame)
        assert frame["message"]
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from(timeout=5))["code"] == "invalid_frame"
    await socket.send_json_to({"type": "cancel", "message_id": 1})  # still answered: still open
    assert (await socket.receive_json_from(timeout=5))["code"] == "not_found"


async def test_a_cancel_the_server_cannot_carry_out_is_an_error_frame_and_the_socket_stays_open(
    socket_for, user, settings
):
    """Several workers, Redis out of reach: a Stop for an answer another worker runs cannot be
    passed on. The page is told so (it may retry), the socket stays open, the answer is untouched."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cid = await conversation_of(user)
    answer = await Message.objects.acreate(
        conversation_id=cid, role="assistant", status="streaming", worker="another-worker"
    )
    socket, _ = await socket_for(user, cid)
    await socket.send_json_to({"type": "cancel", "message_id": answer.pk})
    assert await socket.receive_json_from(timeout=10) == {
        "type": "error",
        "code": "unavailable",
        "message": "The server cannot reach Redis; try again shortly.",
    }
    await socket.send_json_to({"type": "shout"})  # still answered: still open
    assert (await socket.receive_json_from(timeout=5))["code"] == "unknown_type"
    await answer.arefresh_from_db()
    assert answer.status == "streaming"


async def test_a_flood_of_frames_is_rate_limited(socket_for, user):
    socket, _ = await socket_for(user, await conversation_of(user))
    for _ in range(40):
        await socket.send_to(text_data="{bad")
    codes = [(await socket.receive_json_from(timeout=5))["code"] for _ in range(40)]
    assert "rate_limited" in codes and codes[0] == "invalid_json"


# --- cancel, state frames and typing ---------------------------------------------------------


async def test_cancel_over_the_socket_stops_the_answer_and_state_frames_tell(socket_for, client_for, user, upstream):
    upstream.push(tokens=1000, rate=100)
    cid = await conversation_of(user)
    socket, _ = await socket_for(user, cid)
    watcher, _ = await socket_for(user, cid)  # a second tab
    response = await post_message(await client_for(user), cid, "long answer")
    started = await socket.receive_json_from(timeout=5)
    assert started["type"] == "generation" and started["state"] == "started"
    answer_id = started["message_id"]
    await socket.send_json_to({"type": "cancel", "message_id": answer_id})
    await socket.send_json_to({"type": "cancel", "message_id": answer_id})  # idempotent: no error
    events = await events_of(response)
    assert events[-1].data["status"] == "cancelled"
    record = upstream.last()
    # The upstream notices the close on its own thread, maybe a moment after `done` came.
    await asyncio.to_thread(upstream.wait_for, lambda: record.client_closed_at, 2, "the upstream connection to close")
    ended = await frames_until(socket, lambda f: f.get("state") != "started")
    assert [f for f in ended if f["type"] == "error"] == []
    assert ended[-1] == {"type": "generation", "message_id": answer_id, "state": "cancelled"}
    seen = await frames_until(watcher, lambda f: f.get("state") == "cancelled")
    assert seen[0] == {"type": "generation", "message_id": answer_id, "state": "started"}
    stored = await Message.objects.aget(pk=answer_id)
    assert stored.status == "cancelled" and stored.content == "".join(
        e.data["text"] for e in events if e.event == "token"
    )
    await socket.send_json_to({"type": "cancel", "message_id": answer_id})  # after the end: still nothing
    assert await socket.receive_nothing(timeout=0.3)


async def test_a_finished_answer_sends_finished(socket_for, client_for, user, upstream):
    cid = await conversation_of(user)
    socket, _ = await socket_for(user, cid)
    await events_of(await post_message(await client_for(user), cid, "short"))
    frames = await frames_until(socket, lambda f: f.get("state") == "finished")
    assert [f["state"] for f in frames] == ["started", "finished"]


async def test_typing_reaches_the_other_connections_only_and_is_throttled(socket_for, user, settings):
    settings.CHAT_TYPING_THROTTLE_S = 0.5
    cid = await conversation_of(user)
    typist, _ = await socket_for(user, cid)
    other, _ = await socket_for(user, cid)
    elsewhere, _ = await socket_for(user, await conversation_of(user))
    for _ in range(5):
        await typist.send_json_to({"type": "typing", "typing": True})
    assert await other.receive_json_from(timeout=5) == {"type": "typing", "user": "carol", "typing": True}
    assert await other.receive_nothing(timeout=0.2)  # the four repeats were dropped
    await typist.send_json_to({"type": "typing", "typing": False})
    assert (await other.receive_json_from(timeout=5))["typing"] is False
    assert await typist.receive_nothing(timeout=0.2)  # never echoed
    assert await elsewhere.receive_nothing(timeout=0.1)  # another conversation hears nothing


async def test_closing_while_typing_tells_the_others_it_stopped(socket_for, user):
    cid = await conversation_of(user)
    typist, _ = await socket_for(user, cid)
    other, _ = await socket_for(user, cid)
    await typist.send_json_to({"type": "typing", "typing": True})
    assert (await other.receive_json_from(timeout=5))["typing"] is True
    await typist.disconnect()
    assert (await other.receive_json_from(timeout=5))["typing"] is False
