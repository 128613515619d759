"""Drop an event-stream client that has taken nothing for CHAT_SLOW_CLIENT_S.

Daphne writes whatever the app sends into Twisted's buffer at once: it has no back-pressure. A
client that stops reading (a laptop lid closed, a wedged proxy) costs the kernel's socket buffer
plus, in this process, every event of the answer after that: bounded by CHAT_MAX_TOKENS, but
held until the connection goes, and it keeps the answer "followed", so it runs to the end.

So every second a watchdog asks the kernel about each event stream's socket: bytes waiting to be
sent (SIOCOUTQ) and bytes the client acknowledged (TCP_INFO's tcpi_bytes_acked). Data waiting
and nothing acknowledged for CHAT_SLOW_CLIENT_S means the client reads nothing: the connection
is aborted; the response sees the disconnect and detaches, and the answer carries on or stops
under the grace rule like any other that lost its client. A slow reader that keeps taking bytes
is never dropped, nor an idle stream with nothing to send.

Linux and daphne only (the socket comes from daphne's request object, through Twisted's public
getHandle()); elsewhere the guard steps aside.
"""

import asyncio
import fcntl
import functools
import logging
import socket
import struct
import sys
import termios
import time
from dataclasses import dataclass, field

from django.conf import settings

from . import tasks

logger = logging.getLogger(__name__)

_TCP_INFO_LEN = 192
_BYTES_ACKED = struct.Struct("=Q")  # tcpi_bytes_acked: at offset 120 of struct tcp_info (Linux 4.1+)
_BYTES_ACKED_AT = 120


@dataclass(eq=False)
class _Watch:
    transport: object
    sock: socket.socket
    acked: int = -1
    since: float = field(default_factory=time.monotonic)

    def stuck_for(self, now: float) -> float:
        """Seconds the client has had bytes waiting and acknowledged none of them."""
        waiting, acked = _waiting(self.sock), _acked(self.sock)
        if waiting == 0 or acked != self.acked:
            self.acked, self.since = acked, now
        return now - self.since


_watching: set[_Watch] = set()
_watchdog: asyncio.Task | None = None


def guard(app):
    """ASGI middleware: watch the socket of every text/event-stream response."""
    if not sys.platform.startswith("linux"):
        return app

    @functools.wraps(app)
    async def guarded(scope, receive, send):
        transport = _daphne_transport(send) if scope["type"] == "http" else None
        if transport is None or settings.CHAT_SLOW_CLIENT_S <= 0:
            return await app(scope, receive, send)
        watch = None

        async def watched_send(message):
            nonlocal watch
            if message["type"] == "http.response.start" and _is_event_stream(message):
                watch = _watch(transport)
            await send(message)

        try:
            return await app(scope, receive, watched_send)
        finally:
            if watch is not None:
                _watching.discard(watch)

    return guarded


def _daphne_transport(send):
    # Daphne hands each application instance `partial(server.handle_reply, request)`.
    if isinstance(send, functools.partial) and send.args:
        transport = getattr(send.args[0], "transport", None)
        if transport is not None and hasattr(transport, "getHandle"):
            return transport
    return None


def _is_event_stream(message: dict) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in message.get("headers", ())
    )


def _watch(transport) -> _Watch | None:
    global _watchdog
    try:
        sock = transport.getHandle()
        _acked(sock)  # a TCP socket that tells: else there is nothing to watch
    except (OSError, AttributeError, struct.error):
        return None
    watch = _Watch(transport, sock)
    _watching.add(watch)
    if _watchdog is None or _watchdog.done():
        _watchdog = tasks.background(_watch_all(), name="slow-clients")
    return watch


async def _watch_all() -> None:
    while _watching:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for watch in list(_watching):
            try:
                stuck = watch.stuck_for(now)
            except (OSError, ValueError):  # the socket is gone already (closed: its fileno is -1)
                _watching.discard(watch)
                continue
            if stuck > settings.CHAT_SLOW_CLIENT_S:
                logger.warning("dropping an event stream whose client read nothing for %.0f s", stuck)
                _watching.discard(watch)
                watch.transport.abortConnection()


def _waiting(sock: socket.socket) -> int:
    """Bytes in the socket's send queue, not yet acknowledged by the client."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ
    return struct.unpack("=i", buf)[0]


def _acked(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    return _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]
