"""Small tasks that nobody awaits: started in a fresh context and kept referenced until they end."""

import asyncio
import contextvars
from collections.abc import Coroutine

_running: set[asyncio.Task] = set()


def background(coro: Coroutine, name: str | None = None) -> asyncio.Task:
    """Run `coro` on its own. A fresh context: not the request's, whose executor dies with it."""
    task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
