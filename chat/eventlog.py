"""A generation's event log: the ordered SSE frames of one answer, readable from any point.

The generation appends; each response follows from the client's Last-Event-ID. `append` is
synchronous and cheap (the frame is encoded once, here) so the per-token path never waits on
I/O. With several workers a mirror copies each frame to a Redis stream in the background
(`redislog`); a worker following an answer generated elsewhere fills a log of its own from that
stream (`remote`). Either way a response reads an in-memory log through `follow`.
"""

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from django.conf import settings

from . import sse, tasks


class Mirror(Protocol):
    def add(self, seq: int, frame: bytes, done: dict | None) -> None: ...


class MemoryEventLog:
    """Frames numbered 1, 2, 3... in append order; `closed` once the `done` frame is in."""

    def __init__(self, mirror: Mirror | None = None) -> None:
        self._frames: list[bytes] = []
        self._closed = False
        self._changed = asyncio.Event()
        self.mirror = mirror

    @property
    def last_seq(self) -> int:
        return len(self._frames)

    @property
    def closed(self) -> bool:
        return self._closed

    def append(self, event: str, data: dict) -> int:
        """Encode and store one event; return its sequence number."""
        seq = len(self._frames) + 1
        frame = sse.encode_event(seq, event, data)
        self.append_frame(frame)
        if self.mirror is not None:
            self.mirror.add(seq, frame, data if event == "done" else None)
        return seq

    def restore(self, frames: list[bytes]) -> None:
        """Frames 1..N already sent for this answer (a Continue goes on after them); b"" holds
        the place of one not to be sent again. Mirrored like appended ones."""
        for frame in frames:
            seq = self.append_frame(frame)
            if self.mirror is not None:
                self.mirror.add(seq, frame, None)

    def append_frame(self, frame: bytes) -> int:
        """Store a frame encoded elsewhere (b"" keeps the place of one that cannot be had)."""
        if self._closed:
            raise RuntimeError("append to a closed event log")
        self._frames.append(frame)
        self._wake()
        return len(self._frames)

    def close(self) -> None:
        """No more events will come; wake every follower."""
        self._closed = True
        self._wake()

    async def read(self, after: int) -> tuple[list[bytes], bool]:
        """Frames after seq `after`, waiting for one or for the next `nudge`; and whether the log
        is closed. Nothing new and not closed means: time to ping."""
        if after >= len(self._frames) and not self._closed:
            await self._changed.wait()
        return self._frames[after:], self._closed

    def nudge(self) -> None:
        """Wake the followers with nothing new: each sends a ping."""
        self._wake()

    def _wake(self) -> None:
        # set() resolves every current waiter; clearing at once re-arms it for the next append.
        self._changed.set()
        self._changed.clear()


async def follow(log: MemoryEventLog, after: int, done: Callable[[], tuple[int, dict] | None]) -> AsyncIterator[bytes]:
    """The SSE body for one client: frames after `after`, pings while idle, until `done`.

    `done()` gives the seq and data of the log's `done` event, for a client that claims to be
    past it (a bogus id): it must still learn how the answer ended. None means the log closed
    without one (its source was lost): the body just ends, and the client resumes elsewhere.
    """
    yield sse.encode_retry(settings.CHAT_RETRY_MS)
    _pinged.add(log)
    _ensure_pinger()
    seq = after
    while True:
        frames, closed = await log.read(seq)
        if frames:
            seq += len(frames)
            yield b"".join(frames)
        elif closed:
            ending = done()
            if ending is not None and seq > ending[0]:
                yield sse.encode_event(seq + 1, "done", ending[1])
            return
        else:
            yield sse.PING


# Pings: one timer for the process, not one per wait of every follower (a timer set and
# cancelled per token per follower was a measurable share of relaying a token). Every
# CHAT_PING_S each followed log is nudged, and its idle followers ping; a busy follower may
# send a ping between two tokens too, which costs a comment line.
_pinged: "weakref.WeakSet[MemoryEventLog]" = weakref.WeakSet()
_pinger: asyncio.Task | None = None


def _ensure_pinger() -> None:
    global _pinger
    _pinger = tasks.ensure(_pinger, _ping_all, "pings")


async def _ping_all() -> None:
    while _pinged:
        await asyncio.sleep(settings.CHAT_PING_S)
        for log in list(_pinged):
            if log.closed:
                _pinged.discard(log)
            else:
                log.nudge()
