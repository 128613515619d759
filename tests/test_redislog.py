"""The Redis event log in-process, on a Redis db of its own: batching, ids, bounds, remote follow."""

import asyncio
import re

import pytest
import redis

from chat import redislog, remote
from chat.backplane import WORKER_ID
from chat.eventlog import MemoryEventLog
from chat.generation import Generation
from chat.models import Conversation, Message
from tests.cluster import claim_redis_db, release_redis_db

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_url(settings):
    url = claim_redis_db()
    settings.REDIS_URL = url
    yield url
    release_redis_db(url)


def entries(url: str, message_id: int) -> list[tuple[bytes, dict]]:
    with redis.Redis.from_url(url) as r:
        return r.xrange(redislog.stream_key(message_id))


async def test_a_ticks_appends_go_to_redis_as_one_pipeline_with_the_sse_ids(redis_url, monkeypatch):
    writes = []
    real_write = redislog._write

    async def counting_write(batch):
        writes.append(len(batch))
        await real_write(batch)

    monkeypatch.setattr(redislog, "_write", counting_write)
    log = MemoryEventLog(redislog.StreamMirror(7))
    for i in range(50):  # one loop tick: no await between the appends
        log.append("token", {"text": f"t{i}"})
    await log.mirror.flushed()
    assert writes == [50]
    stored = entries(redis_url, 7)
    assert [e for e, _ in stored] == [f"0-{i}".encode() for i in range(1, 51)]
    frames, _ = await log.read(0)
    assert [fields[b"f"] for _, fields in stored] == frames  # the very bytes the local followers get


async def test_a_finished_log_expires_soon_and_a_long_one_is_bounded(redis_url, settings):
    settings.CHAT_LOG_MAX_EVENTS = 100
    settings.CHAT_LOG_RETENTION_S = 30
    log = MemoryEventLog(redislog.StreamMirror(8))
    for i in range(1000):
        log.append("token", {"text": f"t{i}"})
        if i % 100 == 0:
            await asyncio.sleep(0)  # several batches
    log.append("done", {"status": "complete"})
    await log.mirror.flushed()
    with redis.Redis.from_url(redis_url) as r:
        key = redislog.stream_key(8)
        assert r.xlen(key) <= 200  # MAXLEN ~ 100: approximate, a whole macro node at most
        assert 0 < r.ttl(key) <= 30
        last_id, last = r.xrevrange(key, count=1)[0]
    assert last_id == b"0-1001" and redislog.DONE in last


async def test_following_from_redis_gives_the_same_bytes_as_following_in_memory(
    redis_url, user, app_settings, upstream
):
    upstream.push(tokens=40, rate=200)
    conversation = await Conversation.objects.acreate(owner=user)
    question = await conversation.messages.acreate(role="user", content="hi")
    answer = await conversation.messages.acreate(role="assistant", status="streaming", worker=WORKER_ID)
    gen = Generation(
        message_id=answer.pk,
        conversation_id=conversation.pk,
        user_message_id=question.pk,
        model="scripted-model",
        prompt=[{"role": "user", "content": "hi"}],
    )
    gen.start()
    local = b"".join([chunk async for chunk in gen.follow(0)])
    message = await Message.objects.aget(pk=answer.pk)
    from_redis = b"".join([chunk async for chunk in remote.follow(message, 0)])
    assert from_redis == local
    # Chunks that arrive in one read may share a token event, so compare the text, not the count.
    words = b"".join(re.findall(rb'"text":"([^"]*)"', local))
    assert words == b"".join(b"w%d " % i for i in range(40))
    middle = local.count(b"event: token") // 2
    later = b"".join([chunk async for chunk in remote.follow(message, middle)])  # a resume
    retry = local[: local.index(b"\n\n") + 2]
    assert later == retry + local[local.index(b"id: %d\n" % (middle + 1)) :]
