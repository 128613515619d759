"""The admin's live view: staff with the view permission follow anyone's answer and hear typing,
read-only, over the owner's own streams; nobody else does. In-process, through the real middleware
and consumer stack, with the scripted upstream."""

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from chat.models import Message
from tests.test_consumers import ORIGIN, application, conversation_of, events_of, frames_until, post_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def socket_for(client_for):
    """Open the conversation WebSocket as a user; every one is disconnected at teardown."""
    opened: list[WebsocketCommunicator] = []

    async def connect(user, conversation_id: int) -> tuple[WebsocketCommunicator, bool]:
        client = await client_for(user)
        headers = [(b"origin", ORIGIN), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
        communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
        connected, _ = await communicator.connect()
        opened.append(communicator)
        return communicator, connected

    yield connect
    for communicator in opened:
        await communicator.disconnect()


@pytest.fixture
def reviewer(django_user_model):
    """Staff with chat.view_conversation: may watch."""
    user = django_user_model.objects.create_user("rita", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    return user


@pytest.fixture
def outsiders(django_user_model, other_user) -> dict:
    """Who may not watch: another user, staff without the permission, and a non-staff user with it."""
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    holder = django_user_model.objects.create_user("nina", password="x")
    holder.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    return {"other user": other_user, "staff without permission": staff, "permission without staff": holder}


async def start_answer(client_for, owner, upstream, cid: int, **script):
    """The owner posts; returns the owner's response (its SSE body) and the streaming answer's id."""
    upstream.push(**script)
    response = await post_message(await client_for(owner), cid, "write slowly")
    answer = await Message.objects.filter(conversation_id=cid, role="assistant").alatest("id")
    assert answer.status == "streaming"
    return response, answer.pk


async def stream(client, message_id: int):
    return await client.get(f"/api/messages/{message_id}/stream/")


@pytest.mark.parametrize("who", ["other user", "staff without permission", "permission without staff"])
async def test_others_can_neither_stream_nor_connect(outsiders, who, client_for, socket_for, user, upstream):
    outsider = outsiders[who]
    cid = await conversation_of(user)
    owner_response, answer_id = await start_answer(client_for, user, upstream, cid, tokens=30, rate=60)
    response = await stream(await client_for(outsider), answer_id)
    assert response.status_code == 404 and json.loads(response.content)["error"]["code"] == "not_found"
    _, connected = await socket_for(outsider, cid)
    assert not connected
    events = await events_of(owner_response)  # the owner's answer was never disturbed
    assert events[-1].data["status"] == "complete"


async def test_a_reviewer_follows_a_streaming_answer_live(client_for, user, reviewer, upstream):
    cid = await conversation_of(user)
    owner_response, answer_id = await start_answer(client_for, user, upstream, cid, tokens=40, rate=40)
    watched = await stream(await client_for(reviewer), answer_id)
    assert watched.status_code == 200 and watched["Content-Type"] == "text/event-stream"
    owner_events, watched_events = await asyncio.gather(events_of(owner_response), events_of(watched))
    stored = await Message.objects.aget(pk=answer_id)
    assert stored.status == "complete"
    assert watched_events[0].event == "start" and watched_events[-1].event == "done"
    text = "".join(e.data["text"] for e in watched_events if e.event == "token")
    assert text == stored.content == "".join(e.data["text"] for e in owner_events if e.event == "token")
    assert len([e for e in watched_events if e.event == "token"]) > 1  # it came as it was written
    again = await events_of(await stream(await client_for(reviewer), answer_id))  # replayed once stored
    assert "".join(e.data["text"] for e in again if e.event == "token") == stored.content


async def test_a_reviewer_cannot_stop_post_delete_or_read_through_the_api(client_for, user, reviewer, upstream):
    cid = await conversation_of(user)
    owner_response, answer_id = await start_answer(client_for, user, upstream, cid, tokens=30, rate=60)
    client = await client_for(reviewer)
    assert (await client.post(f"/api/messages/{answer_id}/cancel/")).status_code == 404
    assert (await post_message(client, cid, "hijack")).status_code == 404
    assert (await client.delete(f"/api/conversations/{cid}/")).status_code == 404
    assert (await client.get(f"/api/conversations/{cid}/")).status_code == 404
    events = await events_of(owner_response)
    assert events[-1].data["status"] == "complete"
    assert await Message.objects.filter(conversation_id=cid).acount() == 2


async def test_a_reviewer_hears_typing_and_state_but_cannot_cancel_or_type(
    client_for, socket_for, user, reviewer, upstream
):
    cid = await conversation_of(user)
    owner_socket, _ = await socket_for(user, cid)
    watcher, connected = await socket_for(reviewer, cid)
    assert connected
    await owner_socket.send_json_to({"type": "typing", "typing": True})
    assert await watcher.receive_json_from(timeout=5) == {"type": "typing", "user": "carol", "typing": True}
    owner_response, answer_id = await start_answer(client_for, user, upstream, cid, tokens=40, rate=40)
    started = await frames_until(watcher, lambda f: f["type"] == "generation")
    assert started[-1] == {"type": "generation", "message_id": answer_id, "state": "started"}

    await watcher.send_json_to({"type": "cancel", "message_id": answer_id})
    refused = await watcher.receive_json_from(timeout=5)
    assert refused["type"] == "error" and refused["code"] == "read_only" and refused["message"]
    await watcher.send_json_to({"type": "typing", "typing": True})
    assert (await watcher.receive_json_from(timeout=5))["code"] == "read_only"
    # The owner hears no typing from the watcher (only generation frames, none of them typing).
    events = await events_of(owner_response)
    assert events[-1].data["status"] == "complete", "the watcher's cancel stopped the answer"
    frames = await frames_until(owner_socket, lambda f: f.get("state") == "finished")
    assert [f for f in frames if f["type"] == "typing"] == []
    ended = await frames_until(watcher, lambda f: f["type"] == "generation")
    assert ended[-1] == {"type": "generation", "message_id": answer_id, "state": "finished"}


async def test_a_superuser_watches_too(client_for, socket_for, user, admin_user, upstream):
    cid = await conversation_of(user)
    _, connected = await socket_for(admin_user, cid)
    assert connected
    owner_response, answer_id = await start_answer(client_for, user, upstream, cid, tokens=10, rate=40)
    watched = await stream(await client_for(admin_user), answer_id)
    assert watched.status_code == 200
    await asyncio.gather(events_of(owner_response), events_of(watched))
