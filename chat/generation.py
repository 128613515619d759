"""A running answer: its own task, pumping the upstream into an event log that responses follow.

The HTTP response is only a follower: it can go away and come back (Last-Event-ID) while the
generation runs on. Once nobody has followed for CHAT_DETACH_GRACE_S, the generation is
abandoned and the upstream connection closed. Content is checkpointed about once a second,
never per token, and finalised before `done` is sent, so what the client saw is what is stored.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from django.conf import settings

from . import llm, sse, store
from .eventlog import EventLog, MemoryEventLog
from .models import Message

logger = logging.getLogger(__name__)

Status = Message.Status


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
    log: EventLog = field(default_factory=MemoryEventLog)

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    ttft_ms: int | None = None
    status: str = Status.STREAMING
    _followers: int = 0
    _stop_status: str | None = None
    _started: float = 0.0
    _task: asyncio.Task | None = None
    _pump: asyncio.Task | None = None
    _grace: asyncio.TimerHandle | None = None
    _done_seq: int = 0
    _done_data: dict = field(default_factory=dict)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Run the generation as a task of its own; the caller follows it separately."""
        _running[self.message_id] = self
        self._started = time.monotonic()
        self.log.append(
            "start",
            {
                "message_id": self.message_id,
                "conversation_id": self.conversation_id,
                "user_message_id": self.user_message_id,
                "model": self.model,
            },
        )
        # A fresh context: the request's contextvars include asgiref's per-request executor,
        # which dies with the response; the generation must outlive the response.
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"generation-{self.message_id}", context=contextvars.Context()
        )
        if self._followers == 0:
            self._arm_grace()

    def stop(self, status: str = Status.CANCELLED) -> None:
        """End the answer early: close the upstream at once; the first reason given wins."""
        if self._stop_status is None:
            self._stop_status = status
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()

    async def wait(self, timeout: float | None = None) -> None:
        """Until the answer is stored and `done` is in the log (or the timeout passes)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)

    def snapshot(self) -> tuple[str, int]:
        """The text so far and the id of the last event it covers (start + one per token)."""
        n = len(self.parts)  # may be read from a sync thread while tokens arrive: fix n first
        return "".join(self.parts[:n]), 1 + n

    @property
    def finished(self) -> bool:
        return self.status != Status.STREAMING

    # --- following -----------------------------------------------------------------------

    async def follow(self, after: int = 0) -> AsyncIterator[bytes]:
        """The SSE body for one client: frames after `after`, pings while idle, until `done`."""
        self._attach()
        try:
            yield sse.encode_retry(settings.CHAT_RETRY_MS)
            seq = after
            while True:
                frames, closed = await self.log.read(seq, settings.CHAT_PING_S)
                if frames:
                    seq += len(frames)
                    yield b"".join(frames)
                elif closed:
                    if seq > self._done_seq:
                        # The client is past our last event (a bogus id): it must still end.
                        yield sse.encode_event(seq + 1, "done", self._done_data)
                    return
                else:
                    yield sse.PING
        finally:
            self._detach()

    def _attach(self) -> None:
        self._followers += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _detach(self) -> None:
        self._followers -= 1
        if self._followers == 0 and not self.finished:
            self._arm_grace()

    def _arm_grace(self) -> None:
        loop = asyncio.get_running_loop()
        self._grace = loop.call_later(settings.CHAT_DETACH_GRACE_S, self.stop, Status.INTERRUPTED)

    # --- the task ------------------------------------------------------------------------

    async def _run(self) -> None:
        checkpoints = asyncio.create_task(self._checkpoint_loop())
        try:
            ending = await self._generate()
        except asyncio.CancelledError:
            # The worker itself is going down: keep what was streamed, then let it go.
            self.stop(Status.INTERRUPTED)
            if self._pump is not None:
                await asyncio.wait({self._pump})  # no token may slip in after the final save
            await self._end(checkpoints, Ending(Status.INTERRUPTED))
            raise
        except Exception:
            logger.exception("generation %s failed", self.message_id)
            ending = Ending(Status.ERROR, llm.UpstreamError("internal_error", "The answer failed on the server."))
        await self._end(checkpoints, ending)

    async def _generate(self) -> Ending:
        self._pump = asyncio.create_task(self._pump_upstream())
        await asyncio.wait({self._pump})
        if self._pump.cancelled():
            return Ending(self._stop_status or Status.INTERRUPTED)
        exc = self._pump.exception()
        if isinstance(exc, llm.UpstreamError):
            return Ending(Status.ERROR, exc)
        if exc is not None:
            raise exc
        return Ending(Status.COMPLETE)

    async def _pump_upstream(self) -> None:
        deltas = llm.stream_chat(self.prompt, model=self.model, max_tokens=settings.CHAT_MAX_TOKENS)
        async for delta in deltas:
            if delta.text:
                if self.ttft_ms is None:
                    self.ttft_ms = self._elapsed_ms()
                # Log first: if the event cannot be sent, the text must not be stored either.
                self.log.append("token", {"text": delta.text})
                self.parts.append(delta.text)
            if delta.finish_reason:
                self.finish_reason = delta.finish_reason

    async def _checkpoint_loop(self) -> None:
        saved = 0
        while True:
            await asyncio.sleep(settings.CHAT_CHECKPOINT_S)
            if len(self.parts) != saved:
                saved = len(self.parts)
                try:
                    await store.checkpoint(self.message_id, self.parts[:saved], ttft_ms=self.ttft_ms)
                except Exception:  # a missed checkpoint costs nothing the final save won't fix
                    logger.exception("checkpoint of message %s failed", self.message_id)

    async def _end(self, checkpoints: asyncio.Task, ending: Ending) -> None:
        """Store the answer, then close the log with `error` (if any) and `done`."""
        checkpoints.cancel()
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
            if (error := result.error_event()) is not None:
                self.log.append("error", error)
            self._done_data = result.done_event()
            self._done_seq = self.log.append("done", self._done_data)
        finally:
            self.status = ending.status
            self.log.close()
            _running.pop(self.message_id, None)

    def _result(self, ending: Ending) -> "store.Result":
        finish = self.finish_reason if ending.status == Status.COMPLETE else ending.status
        return store.Result(
            status=ending.status,
            finish_reason=finish or "stop",
            model=self.model,
            ttft_ms=self.ttft_ms,
            tokens=len(self.parts),
            duration_ms=self._elapsed_ms(),
            error_code=ending.error.code if ending.error else "",
            error_message=ending.error.message if ending.error else "",
            error_recoverable=ending.error.recoverable if ending.error else True,
        )

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)


# Generations running in this process, by assistant message id.
_running: dict[int, Generation] = {}


def running(message_id: int) -> Generation | None:
    return _running.get(message_id)


async def stop_all(timeout: float = 10.0) -> None:
    """Worker shutdown: end every answer here as `interrupted` and wait for the final saves."""
    generations = list(_running.values())
    for gen in generations:
        gen.stop(Status.INTERRUPTED)
    await asyncio.gather(*(gen.wait(timeout) for gen in generations))
