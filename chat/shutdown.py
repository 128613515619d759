"""Worker shutdown: drain on SIGTERM; answers still in flight end `interrupted`, stored exactly as streamed.

SIGTERM (a deploy, `docker compose stop`, Kubernetes) drains: the worker refuses new answers
(503 `draining`, /readyz 503) while the running ones finish, for up to CHAT_DRAIN_S; then it
stops the rest as `interrupted`, lets their clients read `done`, and exits. A second SIGTERM
cuts the drain short. SIGINT (Ctrl-C) skips the drain.

Daphne knows nothing of generation tasks, which would vanish with the event loop and leave their
last checkpoint behind, and on shutdown it cancels every open response at once. So the drain
happens before the reactor is told to stop, and a Twisted "before shutdown" trigger stops what
is left (after SIGINT) and waits for the final saves.
"""

import asyncio
import logging
import signal
import sys

from django.conf import settings

from . import generation, llm, tasks, worker

logger = logging.getLogger(__name__)

_draining = False


def draining() -> bool:
    """Whether this worker is on its way out and takes no new answers."""
    return _draining


def install() -> None:
    """Hook into daphne's reactor; elsewhere (tests' in-process client, other servers) do nothing."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None:
        reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown)
        # After startup, when Twisted has installed its own handlers: SIGTERM becomes ours.
        reactor.callWhenRunning(_take_sigterm, reactor)


def _take_sigterm(reactor) -> None:
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        return  # the server runs without signal handlers: whoever embeds it decides

    def on_sigterm(signum, frame) -> None:
        reactor.callFromThread(_begin_drain, reactor)

    signal.signal(signal.SIGTERM, on_sigterm)


def _begin_drain(reactor) -> None:
    global _draining
    if _draining:
        logger.info("second SIGTERM: stopping now")
        reactor.stop()
        return
    _draining = True
    logger.info("SIGTERM: draining %d answer(s) for up to %.0f s", generation.running_count(), settings.CHAT_DRAIN_S)
    tasks.background(_drain(reactor), name="drain")


async def _drain(reactor) -> None:
    try:
        await drain(settings.CHAT_DRAIN_S)
    finally:
        if reactor.running:
            reactor.stop()


async def drain(timeout: float) -> None:
    """Let the answers running here finish for up to `timeout`, then stop the rest as interrupted."""
    finished = await generation.wait_all(timeout)
    if not finished:
        logger.info("drain time over: interrupting %d answer(s)", generation.running_count())
    await generation.stop_all()  # stored, and `done` in every log, here and in Redis
    # Their followers here still have `done` to write before daphne cancels every response.
    await generation.followers_gone(timeout=2.0)


def _before_shutdown():
    from twisted.internet.defer import Deferred

    return Deferred.fromFuture(asyncio.ensure_future(_stop()))


async def _stop() -> None:
    await generation.stop_all()  # stored, and `done` sent here and to Redis
    await worker.stop()
    await llm.close_client()  # the upstream pool, so aiohttp has no session to warn about
