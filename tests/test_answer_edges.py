"""Edges of an answer's life found by review, in-process against the scripted upstream."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from chat import recovery, services
from chat.backplane import WORKER_ID
from chat.generation import Generation
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)


async def new_generation(user) -> Generation:
    conversation = await Conversation.objects.acreate(owner=user)
    question = await conversation.messages.acreate(role="user", content="hi")
    answer = await conversation.messages.acreate(role="assistant", status="streaming", worker=WORKER_ID)
    return Generation(
        message_id=answer.pk,
        conversation_id=conversation.pk,
        user_message_id=question.pk,
        model="scripted-model",
        prompt=[{"role": "user", "content": "hi"}],
    )


def events_of(body: bytes) -> list[tuple[str, str]]:
    """(event, data) of each event in an SSE body."""
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], fields["data"]))
    return found


async def test_a_stop_before_the_generation_task_runs_is_honoured(user, app_settings, upstream):
    gen = await new_generation(user)
    gen.start()
    gen.stop()  # before the task has taken a step: there is no upstream call to cancel yet
    await gen.wait(5)
    stored = await Message.objects.aget(pk=gen.message_id)
    assert (gen.status, stored.status, stored.content) == ("cancelled", "cancelled", "")
    assert upstream.records == []  # the model was never asked


async def test_a_resume_racing_the_end_of_an_answer_replays_the_stored_answer(user, app_settings, upstream):
    upstream.push(tokens=5)
    gen = await new_generation(user)
    gen.start()
    stale = await Message.objects.aget(pk=gen.message_id)  # read while it streams...
    assert stale.status == "streaming"
    await gen.wait(5)  # ...and it ends before the resume looks for a running generation
    status = await recovery.settle_orphan(stale)
    frames = b"".join(await sync_to_async(services.replay_frames)(stale))
    tokens = "".join(sse_text for name, sse_text in events_of(frames) if name == "token")
    assert status == "complete"
    assert tokens.replace('{"text":"', "").replace('"}', "") == "w0 w1 w2 w3 w4 "


async def test_a_generation_cancelled_while_storing_still_stores_and_sends_done(user, app_settings, upstream):
    upstream.push(tokens=5)
    gen = await new_generation(user)
    gen.start()
    while gen._pump is None or not gen._pump.done():  # noqa: ASYNC110 (the very step it ends matters)
        await asyncio.sleep(0)
    # Now it stores the answer: cancel it at every step until the task gives up.
    while not gen._task.done():
        gen._task.cancel()
        await asyncio.sleep(0)
    await gen.wait(5)
    body = b"".join([chunk async for chunk in gen.follow(0)])
    names = [name for name, _ in events_of(body)]
    stored = await Message.objects.aget(pk=gen.message_id)
    assert names[-1] == "done" and f'"status":"{stored.status}"' in events_of(body)[-1][1]
    assert stored.status in ("complete", "interrupted") and stored.content == "w0 w1 w2 w3 w4 "
