"""Django's ASGI handler, with the sync half of each request on a few long-lived threads and
Django's middleware hooks on the event loop (chat/middleware.py's ON_LOOP).

Under ASGI Django gives every request a ThreadSensitiveContext: the request's first sync call
(sessions, the ORM) starts a thread, and the request's end joins it (about 0.55 ms of CPU,
measured). Django's database connections belong to a thread, so every request also opened a
connection of its own (on SQLite: the file, Django's SQL functions, the PRAGMAs, the schema).
And every hook of Django's own middleware took a thread hop of its own (about 0.19 ms each).

Here each request is pinned, for its whole life, to one of CHAT_SYNC_THREADS single-thread
executors: the one with the fewest calls waiting. All sync code of a request still runs on one
thread, as Django expects, and a thread's connection serves request after request (persistent on
SQLite; with PostgreSQL's pool, borrowed and given back whenever the thread is idle). Django's
middleware is loaded with its hooks on the event loop (chat/middleware.py).

A view marked `@control` (Stop) runs on a lane of its own: under load every lane has posts
waiting, each holding its thread for milliseconds (or for as long as the database is locked),
and a Stop queued behind them would leave the model talking all that time.
"""

import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.urls import Resolver404, resolve

from .middleware import ON_LOOP


class Lane(ThreadPoolExecutor):
    """One thread; counts the calls given to it that have not finished, and lets go of its
    database connection whenever it has nothing left to do."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        # Each counter is written by one thread only (the loop's, the lane's): no lock needed.
        self.submitted = 0
        self.finished = 0

    @property
    def pending(self) -> int:
        return self.submitted - self.finished

    def submit(self, fn, /, *args, **kwargs) -> Future:
        self.submitted += 1
        return super().submit(self._call, fn, args, kwargs)

    def _call(self, fn, args, kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            self.finished += 1
            if self.pending == 0:
                # Idle: a connection that should not outlive its use (CONN_MAX_AGE=0, PostgreSQL's
                # pool) goes back now, not when this thread's next request starts, which may be
                # minutes away while the streams it served run on. SQLite's persistent one stays.
                close_old_connections()


_lanes: list[Lane] = []
_lanes_lock = threading.Lock()
_turn = itertools.count()


def lanes() -> list[Lane]:
    if not _lanes:
        with _lanes_lock:
            if not _lanes:
                _lanes.extend(Lane(f"sync-{k}") for k in range(max(1, settings.CHAT_SYNC_THREADS)))
    return _lanes


_control: list[Lane] = []


def control(view):
    """Mark a view whose requests must not wait behind others' sync work (chat/views.py)."""
    view.control = True
    return view


def control_lane() -> Lane:
    if not _control:
        with _lanes_lock:
            if not _control:
                _control.append(Lane("control"))
    return _control[0]


def lane_for(path: str) -> Lane:
    try:
        match = resolve(path)
    except Resolver404:
        return pick()
    return control_lane() if getattr(match.func, "control", False) else pick()


def pick() -> Lane:
    """The lane with the fewest calls waiting; ties go round, so idle lanes share the load."""
    pool = lanes()
    start = next(_turn) % len(pool)
    return min(pool[start:] + pool[:start], key=lambda lane: lane.pending)


class PinnedASGIHandler(ASGIHandler):
    """Django's ASGI handler, each request's sync calls on one lane (asgiref's documented
    ThreadSensitiveContext(executor=...): the executor is the caller's, kept after the request)."""

    def load_middleware(self, is_async=False):
        # Django loads settings.MIDDLEWARE by path; the ones named in ON_LOOP become their
        # on-loop subclasses. Settings keep Django's paths, which `check --deploy` looks for.
        paths = settings.MIDDLEWARE
        settings.MIDDLEWARE = [ON_LOOP.get(path, path) for path in paths]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with ThreadSensitiveContext(executor=lane_for(scope["path"])):
            await self.handle(scope, receive, send)
