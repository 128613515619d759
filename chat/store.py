"""Persistence of a running answer: periodic checkpoints and the final save.

Both are plain UPDATEs (short transactions, no read-modify-write); the checkpoints of every
answer in a process go together, in one transaction a tick, so hundreds of answers can
checkpoint on SQLite without "database is locked".

They run in asgiref's shared sync thread, outside any request, so nothing closes a broken or
expired connection for them the way request_started/finished does for views: each write does
that check itself, and a write that meets a dropped connection is retried once on a new one.
"""

import asyncio
import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

from .models import Message, answer_stats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    status: str
    finish_reason: str
    model: str
    ttft_ms: int | None
    tokens: int
    duration_ms: int | None
    error_code: str = ""
    error_message: str = ""
    error_recoverable: bool = True

    @classmethod
    def of(cls, message: Message) -> "Result":
        """A stored answer's outcome, to replay exactly the events it ended with."""
        return cls(
            status=message.status,
            finish_reason=message.finish_reason,
            model=message.model,
            ttft_ms=message.ttft_ms,
            tokens=message.tokens,
            duration_ms=message.duration_ms,
            error_code=message.error_code,
            error_message=message.error_message,
            error_recoverable=message.error_recoverable,
        )

    def error_event(self) -> dict | None:
        """The `error` event's data, or None for an answer that ended without one."""
        if not self.error_code:
            return None
        return {"code": self.error_code, "message": self.error_message, "recoverable": self.error_recoverable}

    def done_event(self) -> dict:
        return {"status": self.status, "finish_reason": self.finish_reason or None, "stats": self.stats()}

    def stats(self) -> dict:
        return answer_stats(
            ttft_ms=self.ttft_ms,
            tokens=self.tokens,
            duration_ms=self.duration_ms,
            finish_reason=self.finish_reason,
            model=self.model,
        )


@dataclass(frozen=True)
class Checkpoint:
    message_id: int
    parts: list[str]
    tokens: int
    ttft_ms: int | None


async def checkpoint(checkpoints: list[Checkpoint]) -> None:
    """Store the text so far of several answers in one thread hop and one transaction; a no-op
    for an answer already final (a late checkpoint loses)."""
    await sync_to_async(_checkpoint)(checkpoints)


def _checkpoint(checkpoints: list[Checkpoint]) -> None:
    def write() -> None:
        with transaction.atomic():
            for c in checkpoints:
                Message.objects.filter(pk=c.message_id, status=Message.Status.STREAMING).update(
                    content="".join(c.parts),
                    chunks=[len(p) for p in c.parts],
                    tokens=c.tokens,
                    ttft_ms=c.ttft_ms,
                    updated_at=now,
                )

    now = timezone.now()
    _retry_once(write)


async def finalise(message_id: int, parts: list[str], result: Result) -> None:
    """Store exactly the streamed text with the reason it ended."""
    await sync_to_async(_update)(
        Message.objects.filter(pk=message_id),
        content="".join(parts),
        chunks=[len(p) for p in parts],
        status=result.status,
        finish_reason=result.finish_reason,
        model=result.model,
        ttft_ms=result.ttft_ms,
        tokens=result.tokens,
        duration_ms=result.duration_ms,
        error_code=result.error_code,
        error_message=result.error_message,
        error_recoverable=result.error_recoverable,
    )


# After a failed final save: try again after these pauses (seconds), then leave it to the sweep.
SAVE_RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


async def finalise_later(message_id: int, parts: list[str], result: Result) -> bool:
    """The final save failed: keep trying in the background. Until it lands the row says
    `streaming` with the last checkpoint, and its conversation takes no new message."""
    for pause in SAVE_RETRY_PAUSES:
        await asyncio.sleep(pause)
        try:
            await finalise(message_id, parts, result)
        except Exception as exc:
            logger.warning("final save of message %s failed again: %s", message_id, exc)
            continue
        logger.info("final save of message %s stored on a later try", message_id)
        return True
    return False


def _update(qs, **fields) -> int:
    return _retry_once(lambda: qs.update(**fields, updated_at=timezone.now()))


def _retry_once(write):
    close_old_connections()
    try:
        return write()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block or connection.is_usable():
            raise  # the database said no (locked, constraint...): not a dropped connection
        connection.close()
        return write()
