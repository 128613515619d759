"""Small tasks that nobody awaits: started in a fresh context and kept referenced until they end."""

import asyncio
import contextvars
from collections.abc import Callable, Coroutine

_running: set[asyncio.Task] = set()


def background(coro: Coroutine, name: str | None = None) -> asyncio.Task:
    """Run `coro` on its own. A fresh context: not the request's, whose executor dies with it."""
    task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def ensure(task: asyncio.Task | None, start: Callable[[], Coroutine], name: str) -> asyncio.Task:
    """`task`, if it still runs on this loop; else a new background task running `start()`.
    (A process-wide loop of ours is started on first use, and again on a new event loop.)"""
    if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
        task = background(start(), name=name)
    return task
