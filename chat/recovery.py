"""Answers left `streaming` by a process that is gone become `interrupted`.

A generation lives in exactly one worker process. When that process dies (crash, kill -9) its
messages stay `streaming` in the database with the last checkpoint's text. Each worker settles
them at start-up, and lazily whenever a client asks about one that nothing is generating.
"""

import logging

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.utils import timezone

from .models import Message
from .worker import WORKER_ID

logger = logging.getLogger(__name__)


def _orphans():
    # One process serves every generation in the default (in-memory) mode, so any streaming
    # answer not stamped with this process's id is an orphan. Several workers sharing a
    # database need a liveness check here instead (the Redis-backed issue adds it).
    return Message.objects.streaming().exclude(worker=WORKER_ID)


def _settle(qs) -> int:
    return qs.update(
        status=Message.Status.INTERRUPTED,
        finish_reason=Message.Status.INTERRUPTED,
        error_code="",
        updated_at=timezone.now(),
    )


def interrupt_orphans() -> int:
    """At start-up: mark answers of dead processes `interrupted`; returns how many."""
    try:
        count = _settle(_orphans())
    except DatabaseError as exc:  # not migrated yet: nothing to recover
        logger.warning("skipped orphan recovery: %s", exc)
        return 0
    if count:
        logger.info("marked %d orphaned answer(s) interrupted", count)
    return count


async def settle_orphan(message: Message) -> str:
    """A streaming answer that no generation here runs: it is dead; store that and say so."""
    await sync_to_async(_settle)(Message.objects.streaming().filter(pk=message.pk))
    await message.arefresh_from_db(fields=["status", "finish_reason", "error_code", "updated_at"])
    return message.status
