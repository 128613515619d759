"""Following an answer that another worker generates, through its Redis stream.

However many clients on this worker follow one such answer, one task reads its stream (XREAD,
blocking) into a local `MemoryEventLog`, and the clients follow that log just as they would a
local generation's. While anyone here follows, the task renews this worker's follower lease, so
the generating worker does not abandon the answer. Each time the stream has been quiet for a
heartbeat interval it checks that the generating worker is still alive; if not, the answer is
settled `interrupted` (with its last checkpoint) and the clients here get `done` at once.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

from django.conf import settings
from redis.exceptions import RedisError

from . import backplane, eventlog, recovery, redislog, store, tasks
from .eventlog import MemoryEventLog
from .models import Message

logger = logging.getLogger(__name__)


class Replica:
    """This worker's copy of an answer running on another worker."""

    def __init__(self, message: Message) -> None:
        self.message_id = message.pk
        self.worker = message.worker
        self.log = MemoryEventLog()
        self.followers = 0
        self.done: tuple[int, dict] | None = None  # the `done` event's seq and data, once known
        self._reader: asyncio.Task | None = None

    async def follow(self, after: int) -> AsyncIterator[bytes]:
        self._attach()
        try:
            async for chunk in eventlog.follow(self.log, after, lambda: self.done):
                yield chunk
        finally:
            self._detach()

    def _attach(self) -> None:
        self.followers += 1
        if self._reader is None:
            self._reader = tasks.background(self._read(), name=f"replica-{self.message_id}")

    def _detach(self) -> None:
        self.followers -= 1
        if self.followers > 0:
            return
        _replicas.pop(self.message_id, None)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        if not self.log.closed:
            tasks.background(self._let_go())

    async def _let_go(self) -> None:
        """Nobody here follows any more: drop the lease and let the generating worker know now."""
        try:
            await backplane.lease_drop(self.message_id)
            await backplane.send_control(self.worker, "detached", self.message_id)
        except Exception:
            logger.warning("could not release the lease on message %s", self.message_id, exc_info=True)

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                await self._pump()  # picks up after the last event it has
                return
            except (RedisError, OSError) as exc:
                failures += 1
                if failures <= 10:
                    logger.warning("following message %s from Redis: %s; retrying", self.message_id, exc)
                    await asyncio.sleep(min(0.2 * failures, 2.0))
                    continue
                logger.error("gave up following message %s from Redis: %s", self.message_id, exc)
            except Exception:
                logger.exception("following message %s from Redis failed", self.message_id)
            # No `done` to give: the responses end without one and their clients resume elsewhere.
            self.log.close()
            return

    async def _pump(self) -> None:
        r, key = backplane.client(), redislog.stream_key(self.message_id)
        block_ms = max(int(settings.CHAT_HEARTBEAT_S * 1000), 1)
        renew_every = settings.CHAT_LEASE_S / 3
        renewed = 0.0
        while True:
            if time.monotonic() - renewed >= renew_every:
                await backplane.lease_renew(self.message_id)
                renewed = time.monotonic()
            found = await r.xread({key: redislog.entry_id(self.log.last_seq)}, count=1000, block=block_ms)
            if not found:
                # Quiet for a heartbeat interval: is anyone still writing it?
                if not await backplane.worker_alive(self.worker):
                    await self._end_from_database()
                    return
                continue
            for entry, fields in found[0][1]:
                seq = redislog.entry_seq(entry)
                if seq > self.log.last_seq + 1:
                    # Trimmed (a log longer than CHAT_LOG_MAX_EVENTS): the ids stay true, the text has a gap.
                    logger.warning(
                        "message %s: events %d-%d were trimmed", self.message_id, self.log.last_seq + 1, seq - 1
                    )
                    while self.log.last_seq < seq - 1:
                        self.log.append_frame(b"")
                self.log.append_frame(fields[redislog.FRAME])
                if redislog.DONE in fields:
                    self.done = seq, json.loads(fields[redislog.DONE])
                    self.log.close()
                    return

    async def _end_from_database(self) -> None:
        """The generating worker is gone: settle the answer, and end with how it is stored."""
        message = await Message.objects.aget(pk=self.message_id)
        if message.status == Message.Status.STREAMING:
            await recovery.settle_orphan(message)
        result = store.Result.of(message)
        # The client may have seen more than the last checkpoint holds; it cannot be had now.
        if (error := result.error_event()) is not None:
            self.log.append("error", error)
        done = result.done_event()
        self.done = self.log.append("done", done), done
        self.log.close()


_replicas: dict[int, Replica] = {}


def follow(message: Message, after: int) -> AsyncIterator[bytes]:
    """The SSE body for a client here following an answer generated on another worker."""
    replica = _replicas.get(message.pk)
    if replica is None or (replica.log.closed and replica.followers == 0):
        replica = _replicas[message.pk] = Replica(message)
    return replica.follow(after)


async def wait_done(message: Message, timeout: float) -> str:
    """After a cancel sent elsewhere: until the answer is stored, then its status."""
    await redislog.wait_done(message.pk, timeout)
    await message.arefresh_from_db(fields=["status"])
    return message.status
