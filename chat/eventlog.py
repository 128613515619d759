"""A generation's event log: the ordered SSE frames of one answer, readable from any point.

The generation appends; each response follows from the client's Last-Event-ID. `append` is
synchronous and cheap (the frame is encoded once, here) so the per-token path never waits on
I/O; a networked backend (Redis streams, a later issue) flushes in the background instead.
"""

import asyncio
from abc import ABC, abstractmethod

from . import sse


class EventLog(ABC):
    """Frames numbered 1, 2, 3... in append order; `closed` once the `done` frame is in."""

    @abstractmethod
    def append(self, event: str, data: dict) -> int:
        """Encode and store one event; return its sequence number."""

    @abstractmethod
    def close(self) -> None:
        """No more events will come; wake every follower."""

    @abstractmethod
    async def read(self, after: int, timeout: float) -> tuple[list[bytes], bool]:
        """Frames after seq `after`, waiting up to `timeout` for one; and whether the log is closed."""


class MemoryEventLog(EventLog):
    """The in-process log: a list of encoded frames and one wake-up event for followers."""

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._closed = False
        self._changed = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return len(self._frames)

    def append(self, event: str, data: dict) -> int:
        if self._closed:
            raise RuntimeError("append to a closed event log")
        seq = len(self._frames) + 1
        self._frames.append(sse.encode_event(seq, event, data))
        self._wake()
        return seq

    def close(self) -> None:
        self._closed = True
        self._wake()

    async def read(self, after: int, timeout: float) -> tuple[list[bytes], bool]:
        if after >= len(self._frames) and not self._closed:
            try:
                async with asyncio.timeout(timeout):  # no extra task per wait, unlike wait_for
                    await self._changed.wait()
            except TimeoutError:
                pass
        return self._frames[after:], self._closed

    def _wake(self) -> None:
        # set() resolves every current waiter; clearing at once re-arms it for the next append.
        self._changed.set()
        self._changed.clear()
