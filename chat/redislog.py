"""An answer's event log as a Redis stream, so that any worker can replay and follow it.

One stream per answer, `<prefix>log:<message id>`. Entry ids are `0-<seq>`: the very SSE ids the
client sees, so `Last-Event-ID: N` is simply "entries after 0-N" on every worker. Each entry
holds the encoded frame (`f`); the `done` entry also holds its data as JSON (`done`).

The generating worker's own followers read its in-memory log; the stream is a copy written
behind it. All answers of a process share one writer that sends whatever was appended during a
loop tick as one pipeline: never a round trip per token, and the token path never waits.
"""

import asyncio
import json
import logging

from django.conf import settings
from redis.exceptions import RedisError

from . import backplane, tasks

logger = logging.getLogger(__name__)

FRAME, DONE = b"f", b"done"


def stream_key(message_id: int) -> str:
    return backplane.key("log", message_id)


def entry_id(seq: int) -> str:
    return f"0-{seq}"


def entry_seq(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[1])


class StreamMirror:
    """The `MemoryEventLog` mirror of one answer: hands each frame to the process's writer."""

    def __init__(self, message_id: int) -> None:
        self.key = stream_key(message_id)

    def add(self, seq: int, frame: bytes, done: dict | None) -> None:
        _writer().add(self.key, seq, frame, done)

    async def flushed(self, timeout: float = 5.0) -> None:
        """Until everything added so far is in Redis (or the timeout passes)."""
        try:
            async with asyncio.timeout(timeout):
                await _writer().flushed()
        except TimeoutError:
            logger.warning("event log %s: not flushed to Redis within %.0f s", self.key, timeout)


class _Writer:
    """Batches every answer's appends into one pipeline per loop tick, in order."""

    RETRIES = 3

    def __init__(self) -> None:
        self._pending: list[tuple[str, int, bytes, dict | None]] = []
        self._waiters: list[asyncio.Future] = []
        self._task: asyncio.Task | None = None

    def add(self, key: str, seq: int, frame: bytes, done: dict | None) -> None:
        self._pending.append((key, seq, frame, done))
        if self._task is None:
            self._task = tasks.background(self._run(), name="redis-log-writer")

    async def flushed(self) -> None:
        if self._task is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    async def _run(self) -> None:
        failures = 0
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the rest of this tick's appends join the batch
                batch, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                try:
                    await _write(batch)
                    failures = 0
                except (RedisError, OSError) as exc:
                    failures += 1
                    if failures <= self.RETRIES:
                        logger.warning("writing %d event(s) to Redis failed (%s); retrying", len(batch), exc)
                        self._pending[:0] = batch
                        self._waiters[:0] = waiters
                        await asyncio.sleep(0.1 * failures)
                        continue
                    logger.error("dropped %d event(s) Redis would not take: %s", len(batch), exc)
                    failures = 0
                _wake(waiters)
        finally:
            self._task = None
            _wake(self._waiters)
            self._waiters = []


async def _write(batch: list[tuple[str, int, bytes, dict | None]]) -> None:
    async with backplane.client().pipeline(transaction=False) as pipe:
        expiring: dict[str, int] = {}
        for key, seq, frame, done in batch:
            fields = {FRAME: frame}
            if done is not None:
                fields[DONE] = json.dumps(done)
            pipe.xadd(key, fields, id=entry_id(seq), maxlen=settings.CHAT_LOG_MAX_EVENTS, approximate=True)
            # A finished answer's log stays briefly for exact resume, then the database serves it;
            # a running one expires only if its worker vanished without finishing it.
            ttl = settings.CHAT_LOG_RETENTION_S if done is not None else settings.CHAT_LOG_TTL_S
            expiring[key] = min(expiring.get(key, ttl), ttl)
        for key, ttl in expiring.items():
            pipe.expire(key, max(int(ttl), 1))
        await pipe.execute()


def _wake(waiters: list[asyncio.Future]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


_writers: dict[asyncio.AbstractEventLoop, _Writer] = {}


def _writer() -> _Writer:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        for old in [old for old in _writers if old.is_closed()]:
            del _writers[old]
        writer = _writers[loop] = _Writer()
    return writer


async def wait_done(message_id: int, timeout: float) -> bool:
    """Until the answer's log has its `done` entry, from any worker; False on timeout."""
    r, key = backplane.client(), stream_key(message_id)
    deadline = asyncio.get_running_loop().time() + timeout
    last = await r.xrevrange(key, count=1)
    after = last[0][0] if last else b"0-0"
    if last and DONE in last[0][1]:
        return True
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        found = await r.xread({key: after}, count=100, block=max(int(left * 1000), 1))
        for entry, fields in found[0][1] if found else []:
            if DONE in fields:
                return True
            after = entry
    return False
