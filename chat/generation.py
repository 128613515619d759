"""A running answer: its own task, pumping the upstream into an event log that responses follow.

The HTTP response is only a follower: it can go away and come back (Last-Event-ID) while the
generation runs on. Once nobody has followed for CHAT_DETACH_GRACE_S, here or on another worker
(their follower leases are in Redis), the generation is abandoned and the upstream connection
closed. Content is checkpointed about once a second, never per token, and finalised before
`done` is sent, so what the client saw is what is stored.

With several workers the log is mirrored to a Redis stream, and a cancel may come from any
worker: over this worker's control channel (`worker`) or, should that message be lost, through
the durable flag the checkpoint loop reads.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from django.conf import settings

from . import backplane, eventlog, llm, metrics, notify, store, tasks
from .eventlog import MemoryEventLog
from .models import Message
from .redislog import StreamMirror

logger = logging.getLogger(__name__)

Status = Message.Status

# How long a new answer waits for its first follower (the response that posted it).
FIRST_FOLLOWER_WAIT_S = 30.0


@dataclass
class Ending:
    status: str
    error: llm.UpstreamError | None = None


@dataclass
class Generation:
    message_id: int
    conversation_id: int
    user_message_id: int
    model: str
    prompt: list[dict]
    user_id: int | None = None  # the owner: may stop it without a database read (services)
    log: MemoryEventLog = None  # type: ignore[assignment]  # made in __post_init__
    # Continue: the frames this answer sent before (ids 1..N), and (chunks before, N).
    earlier: list[bytes] | None = None
    resume: tuple[int, int] | None = None
    earlier_ms: int = 0  # the earlier runs' duration
    upstream: llm.EarlyStream | None = None  # the request, if the start sent it already (services)

    parts: list[str] = field(default_factory=list)  # the text of each token event
    tokens: int = 0  # upstream chunks: an event may hold several that arrived together
    finish_reason: str | None = None
    ttft_ms: int | None = None
    status: str = Status.STREAMING
    _followers: int = 0
    _stop_status: str | None = None
    _stop_error: llm.UpstreamError | None = None
    _started: float = 0.0
    _task: asyncio.Task | None = None
    _ended: asyncio.Event = field(default_factory=asyncio.Event)  # stored, and `done` in the log
    _pump: asyncio.Task | None = None
    _grace: asyncio.TimerHandle | None = None
    _done: tuple[int, dict] | None = None  # the `done` event's seq and data, once appended
    _saved: int = 0  # token events in the last stored checkpoint
    _last_token: float = 0.0  # monotonic time of the last token (metrics), 0 before the first

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = MemoryEventLog(StreamMirror(self.message_id) if backplane.enabled() else None)
        self._saved = len(self.parts)  # a continued answer's earlier text is stored already

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Run the generation as a task of its own; the caller follows it separately."""
        _running[self.message_id] = self
        # Time to first token counts from the request upstream, when it went before the answer was stored.
        self._started = self.upstream.started if self.upstream is not None else time.monotonic()
        if self.earlier is not None:  # Continue: the same answer, its ids going on
            self.log.restore(self.earlier)
        else:
            self.log.append(
                "start",
                {
                    "message_id": self.message_id,
                    "conversation_id": self.conversation_id,
                    "user_message_id": self.user_message_id,
                    "model": self.model,
                },
            )
        metrics.answer_started()  # answer_ended() in _end(), which the task always reaches
        # A fresh context (tasks.background): the generation must outlive the response.
        self._task = tasks.background(self._run(), name=f"generation-{self.message_id}")
        _ensure_checkpointer()
        if self._followers == 0:
            # The poster's response attaches once Django starts streaming it, which under heavy
            # load can take longer than the grace: give it longer before calling it gone.
            self._arm_grace(max(settings.CHAT_DETACH_GRACE_S, FIRST_FOLLOWER_WAIT_S))
        notify.generation_state(self.conversation_id, self.message_id, "started")

    def stop(self, status: str = Status.CANCELLED, error: llm.UpstreamError | None = None) -> None:
        """End the answer early: close the upstream at once; the first reason given wins.

        A stop that comes before the task has begun to pump is kept and honoured when it does.
        """
        if self._stop_status is None:
            self._stop_status, self._stop_error = status, error
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    def stalled(self, now: float) -> bool:
        """Streaming, and no token for CHAT_STALL_TIMEOUT_S (before the first, the read timeout rules)."""
        return not self.finished and self._last_token > 0 and now - self._last_token > settings.CHAT_STALL_TIMEOUT_S

    async def wait(self, timeout: float | None = None) -> None:
        """Until the answer is stored and `done` is in the log (or the timeout passes)."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), timeout)

    def snapshot(self) -> tuple[str, int]:
        """The text so far and the id of the last event it covers (start + one per token)."""
        n = len(self.parts)  # may be read from a sync thread while tokens arrive: fix n first
        if self.resume is not None and n > self.resume[0]:
            return "".join(self.parts[:n]), self.resume[1] + n - self.resume[0]
        return "".join(self.parts[:n]), 1 + n

    @property
    def finished(self) -> bool:
        return self.status != Status.STREAMING

    # --- following -----------------------------------------------------------------------

    async def follow(self, after: int = 0) -> AsyncIterator[bytes]:
        """The SSE body for one client: frames after `after`, pings while idle, until `done`."""
        self._attach()
        try:
            async for chunk in eventlog.follow(self.log, after, lambda: self._done):
                yield chunk
        finally:
            self._detach()

    def _attach(self) -> None:
        global _following
        _following += 1
        self._followers += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _detach(self) -> None:
        global _following
        _following -= 1
        self._followers -= 1
        if self._followers == 0 and not self.finished:
            self._arm_grace()

    def remote_detached(self) -> None:
        """The last follower on another worker left: the grace period starts now, not at its next check."""
        if self._followers == 0 and not self.finished:
            self._arm_grace()

    def _arm_grace(self, delay: float | None = None) -> None:
        if self._grace is not None:
            self._grace.cancel()
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(settings.CHAT_DETACH_GRACE_S if delay is None else delay, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        if not backplane.enabled():
            self.stop(Status.INTERRUPTED)
        elif not self.finished:
            tasks.background(self._abandon_unless_followed())

    async def _abandon_unless_followed(self) -> None:
        try:
            followed_elsewhere = await backplane.remote_followers(self.message_id) > 0
        except Exception:  # Redis is gone: nobody elsewhere can be following through it
            logger.exception("follower check of message %s failed", self.message_id)
            followed_elsewhere = False
        if self._followers or self.finished:
            return
        if followed_elsewhere:
            self._arm_grace()  # look again after another grace period
        else:
            self.stop(Status.INTERRUPTED)

    # --- the task ------------------------------------------------------------------------

    async def _run(self) -> None:
        cancelled = False
        try:
            ending = await self._generate()
        except asyncio.CancelledError:
            # The worker itself is going down: keep what was streamed, then let it go.
            self.stop(Status.INTERRUPTED)
            ending, cancelled = None, True
        except Exception:
            logger.exception("generation %s failed", self.message_id)
            ending = Ending(Status.ERROR, llm.UpstreamError("internal_error", "The answer failed on the server."))
        # Storing the answer and sending `done` run to the end even if this task is cancelled
        # (again) meanwhile: a log closed without `done` would read as a clean end.
        try:
            await asyncio.shield(tasks.background(self._finish(ending)))
        except asyncio.CancelledError:
            cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _finish(self, ending: Ending | None) -> None:
        if ending is None:
            if self._pump is not None:
                await asyncio.wait({self._pump})  # no token may slip in after the final save
            elif self.upstream is not None:  # cancelled before it began: hang up what the start sent
                await self.upstream.aclose()
            ending = Ending(Status.INTERRUPTED)
        try:
            await self._end(ending)
        finally:
            self._ended.set()

    async def _generate(self) -> Ending:
        if self._stop_status is not None:  # stopped before it began: ask the upstream nothing more
            if self.upstream is not None:
                await self.upstream.aclose()
            return Ending(self._stop_status, self._stop_error)
        self._pump = asyncio.create_task(self._pump_upstream())
        await asyncio.wait({self._pump})
        if self._pump.cancelled():
            return Ending(self._stop_status or Status.INTERRUPTED, self._stop_error)
        exc = self._pump.exception()
        if isinstance(exc, llm.UpstreamError):
            return Ending(Status.ERROR, exc)
        if exc is not None:
            raise exc
        return Ending(Status.COMPLETE)

    async def _pump_upstream(self) -> None:
        deltas = self.upstream or llm.stream_chat(self.prompt, model=self.model, max_tokens=settings.CHAT_MAX_TOKENS)
        async with aclosing(deltas):  # whatever ends the loop, the upstream connection closes now
            async for delta in deltas:
                if delta.text:
                    if self.ttft_ms is None:
                        self.ttft_ms = self._elapsed_ms()
                    # Log first: if the event cannot be sent, the text must not be stored either.
                    self.log.append("token", {"text": delta.text})
                    self.parts.append(delta.text)
                    self.tokens += delta.count
                    self._last_token = metrics.token(self._started, self._last_token, delta.count)
                if delta.finish_reason:
                    self.finish_reason = delta.finish_reason

    def checkpoint_due(self) -> "store.Checkpoint | None":
        """The text so far, if it grew since the last stored checkpoint."""
        n = len(self.parts)
        if n == self._saved:
            return None
        return store.Checkpoint(self.message_id, self.parts[:n], self.tokens, self.ttft_ms)

    async def _end(self, ending: Ending) -> None:
        """Store the answer, then close the log with `error` (if any) and `done`."""
        if self._grace is not None:
            self._grace.cancel()
        try:
            result = self._result(ending)
            try:
                await store.finalise(self.message_id, list(self.parts), result)
            except Exception:
                logger.exception("final save of message %s failed", self.message_id)
                ending = Ending(Status.ERROR, llm.UpstreamError("storage_error", "The answer could not be saved."))
                result = self._result(ending)
                # Store it later, as the client is told now: the streamed text and this error.
                tasks.background(store.finalise_later(self.message_id, list(self.parts), result))
            if (error := result.error_event()) is not None:
                self.log.append("error", error)
            done = result.done_event()
            self._done = self.log.append("done", done), done
        finally:
            self.status = ending.status
            self.log.close()
            _running.pop(self.message_id, None)
            metrics.answer_ended(ending.status, ending.error.code if ending.error else "")
            notify.generation_state(self.conversation_id, self.message_id, notify.STATE_OF[ending.status])
        if self.log.mirror is not None:
            await self.log.mirror.flushed()  # followers on other workers get `done` before we call it over

    def _result(self, ending: Ending) -> "store.Result":
        finish = self.finish_reason if ending.status == Status.COMPLETE else ending.status
        return store.Result(
            status=ending.status,
            finish_reason=finish or "stop",
            model=self.model,
            ttft_ms=self.ttft_ms,
            tokens=self.tokens,
            duration_ms=self.earlier_ms + self._elapsed_ms(),
            error_code=ending.error.code if ending.error else "",
            error_message=ending.error.message if ending.error else "",
            error_recoverable=ending.error.recoverable if ending.error else True,
        )

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)


# Generations running in this process, by assistant message id.
_running: dict[int, Generation] = {}
# Responses following one of them, here.
_following = 0


def running(message_id: int) -> Generation | None:
    return _running.get(message_id)


def running_count() -> int:
    return len(_running)


# --- checkpoints: one task for every answer of this process -----------------------------------

_checkpointer: asyncio.Task | None = None


def _ensure_checkpointer() -> None:
    global _checkpointer
    _checkpointer = tasks.ensure(_checkpointer, _checkpoint_all, "checkpoints")


async def _checkpoint_all() -> None:
    """Every CHAT_CHECKPOINT_S while answers run here: their cancel flags in one Redis round trip,
    then the text of those that grew, in one thread hop and one database transaction. (One task
    and one write per answer each second cost a thread hop and a connection per answer.)"""
    while _running:
        await asyncio.sleep(settings.CHAT_CHECKPOINT_S)
        generations = [gen for gen in _running.values() if not gen.finished]
        _stop_stalled(generations)
        await _check_cancel_flags(generations)
        due = [(gen, c) for gen in generations if (c := gen.checkpoint_due()) is not None]
        if not due:
            continue
        try:
            await store.checkpoint([c for _, c in due])
        except Exception:  # a missed checkpoint costs nothing the final save won't fix
            logger.exception("checkpoint of %d answer(s) failed", len(due))
            continue
        for gen, c in due:
            gen._saved = len(c.parts)


def _stop_stalled(generations: list[Generation]) -> None:
    """An upstream silent mid-answer is given up on here, at no cost per token (the read timeout,
    which must also allow for a slow first token, would wait far longer)."""
    now = time.monotonic()
    for gen in generations:
        if gen.stalled(now):
            logger.warning("upstream of message %s stalled; stopping it", gen.message_id)
            gen.stop(Status.ERROR, llm.stalled(settings.CHAT_STALL_TIMEOUT_S))


async def _check_cancel_flags(generations: list[Generation]) -> None:
    """A cancel sent from another worker whose control message was lost still stops its answer."""
    try:
        asked = await backplane.cancel_requested([gen.message_id for gen in generations])
    except Exception:
        logger.warning("cancel flags unreadable", exc_info=True)
        return
    for gen in generations:
        if status := asked.get(gen.message_id):
            gen.stop(status)


async def wait_all(timeout: float) -> bool:
    """Until no answer runs here (True), or the timeout passes (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _running:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        pending = {asyncio.ensure_future(gen._ended.wait()) for gen in _running.values() if gen._task is not None}
        if pending:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=remaining)
            for waiter in pending:
                waiter.cancel()
        else:
            await asyncio.sleep(0.05)  # one being started right now
    return True


async def followers_gone(timeout: float) -> None:
    """Until every response following an answer of this process has ended, or the timeout passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _following > 0 and loop.time() < deadline:  # noqa: ASYNC110 (once, at shutdown: not worth an Event per loop)
        await asyncio.sleep(0.05)


async def stop_all(timeout: float = 10.0) -> None:
    """Worker shutdown: end every answer here as `interrupted` and wait for the final saves."""
    generations = list(_running.values())
    for gen in generations:
        gen.stop(Status.INTERRUPTED)
    await asyncio.gather(*(gen.wait(timeout) for gen in generations))
