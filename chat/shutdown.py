"""Worker shutdown: answers in flight end `interrupted`, stored exactly as streamed.

On SIGINT/SIGTERM daphne cancels its open requests but knows nothing of generation tasks, which
would vanish with the event loop and leave their last checkpoint behind. A Twisted "before
shutdown" trigger (run before daphne's own, which is registered later) stops them first and
waits for their final saves; attached clients even receive their `done`.
"""

import asyncio
import sys

from . import generation, worker


def install() -> None:
    """Hook into daphne's reactor; elsewhere (tests' in-process client, other servers) do nothing."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None:
        reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)


def _before_shutdown():
    from twisted.internet.defer import Deferred

    return Deferred.fromFuture(asyncio.ensure_future(_stop()))


async def _stop() -> None:
    await generation.stop_all()  # stored, and `done` sent here and to Redis
    await worker.stop()
