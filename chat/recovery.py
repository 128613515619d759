"""Answers left `streaming` by a worker that is gone become `interrupted`.

A generation lives in exactly one worker process, which stamps its id on the answer and, with
several workers, keeps a heartbeat in Redis. When that process dies (crash, kill -9) its
messages stay `streaming` with the last checkpoint's text. Whoever notices settles them: any
worker at start-up, every worker's periodic sweep, a request about one, or a follower on another
worker. Answers of live workers are never touched. In one process (no Redis) the only live
worker is this one, so every answer stamped by another process is an orphan.
"""

import logging
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from . import backplane, generation, notify
from .backplane import WORKER_ID
from .models import Message

logger = logging.getLogger(__name__)

# A row this worker stamped but does not run is an orphan too (its final save failed, say);
# younger ones may be an answer between its INSERT and its task's start.
OWN_ORPHAN_AGE = timedelta(seconds=30)


def _settle(rows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Mark these (message, conversation) answers interrupted if still streaming; return those changed."""
    settled = []
    for message_id, conversation_id in rows:
        changed = (
            Message.objects.streaming()
            .filter(pk=message_id)
            .update(
                status=Message.Status.INTERRUPTED,
                finish_reason=Message.Status.INTERRUPTED,
                error_code="",
                updated_at=timezone.now(),
            )
        )
        if changed:
            settled.append((message_id, conversation_id))
    return settled


def _announce(settled: list[tuple[int, int]]) -> None:
    for message_id, conversation_id in settled:
        notify.generation_state(conversation_id, message_id, "interrupted")


def interrupt_orphans() -> int:
    """At start-up: mark answers of dead workers `interrupted`; returns how many."""
    try:
        rows = list(
            Message.objects.streaming().exclude(worker=WORKER_ID).values_list("pk", "conversation_id", "worker")
        )
        alive = backplane.alive_workers_sync({worker for *_, worker in rows})
        count = len(_settle([(pk, conversation) for pk, conversation, worker in rows if worker not in alive]))
    except DatabaseError as exc:  # not migrated yet: nothing to recover
        logger.warning("skipped orphan recovery: %s", exc)
        return 0
    except RedisError as exc:  # cannot tell the dead from the live: leave them to the sweeper
        logger.warning("skipped orphan recovery, Redis unreachable: %s", exc)
        return 0
    if count:
        logger.info("marked %d orphaned answer(s) interrupted", count)
    return count


async def sweep(*, conversation_id: int | None = None) -> int:
    """Settle the streaming answers (of one conversation, or all) that no live worker runs."""
    qs = Message.objects.streaming()
    if conversation_id is not None:
        qs = qs.filter(conversation_id=conversation_id)
    rows = [row async for row in qs.values_list("pk", "conversation_id", "worker", "created_at")]
    if not rows:
        return 0
    alive = await backplane.alive_workers({worker for _, _, worker, _ in rows})
    old = timezone.now() - OWN_ORPHAN_AGE
    orphans = [
        (pk, conversation)
        for pk, conversation, worker, created in rows
        if worker not in alive or (worker == WORKER_ID and created < old and generation.running(pk) is None)
    ]
    settled = await sync_to_async(_settle)(orphans) if orphans else []
    _announce(settled)
    if settled:
        logger.info("marked %d orphaned answer(s) interrupted", len(settled))
    return len(settled)


async def settle_orphan(message: Message) -> str:
    """A streaming answer that no live worker runs: store that it was interrupted and say so."""
    _announce(await sync_to_async(_settle)([(message.pk, message.conversation_id)]))
    # Every field: the answer may have ended normally since `message` was read (a resume racing
    # the end), and a replay of the old text with the new status would differ from what is stored.
    await message.arefresh_from_db()
    return message.status
