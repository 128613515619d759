"""This worker process at run time, with several workers: heartbeat, control channel, sweeper.

- The heartbeat (a Redis key with a TTL) tells other workers that this one's answers are alive.
  It is written before this worker stamps an answer as its own, so no other worker can ever
  see such an answer without it.
- The control channel (Redis pub/sub) brings cancels, and news that the last follower on some
  other worker left, for the answers generated here.
- The sweeper settles answers whose worker died while nobody was looking.

The ASGI app is imported before any event loop runs, so all this starts on first use. In one
process (no Redis) there is nothing to run.
"""

import asyncio
import json
import logging
import random
import time

from django.conf import settings

from . import backplane, generation, recovery, tasks
from .backplane import WORKER_ID

logger = logging.getLogger(__name__)

__all__ = ["WORKER_ID", "ensure_started", "stop"]


class _Runtime:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.last_beat = 0.0
        self.tasks = [
            tasks.background(coro, name=name)
            for name, coro in (
                ("worker-heartbeat", self._heartbeat()),
                ("worker-control", self._listen()),
                ("worker-sweeper", self._sweep()),
            )
        ]

    async def beat(self) -> None:
        await backplane.heartbeat()
        self.last_beat = time.monotonic()

    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:
                logger.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(settings.CHAT_HEARTBEAT_S)

    async def _listen(self) -> None:
        while True:
            pubsub = backplane.client().pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(backplane.control_channel(WORKER_ID))
                async for message in pubsub.listen():
                    _on_control(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("control channel lost (%s); resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                await pubsub.aclose()

    async def _sweep(self) -> None:
        while True:
            # Jittered, so that the workers' sweeps spread out rather than coincide.
            await asyncio.sleep(settings.CHAT_SWEEP_S * random.uniform(0.75, 1.25))
            try:
                await recovery.sweep()
            except Exception:
                logger.exception("sweep for orphaned answers failed")


def _on_control(raw: bytes) -> None:
    try:
        message = json.loads(raw)
        op, message_id = message["op"], int(message["message_id"])
    except (ValueError, KeyError, TypeError):
        logger.warning("ignored a malformed control message: %r", raw[:200])
        return
    gen = generation.running(message_id)
    if gen is None:
        return  # ended meanwhile, or never ours
    if op == "cancel":
        gen.stop(message.get("status") or "cancelled")
    elif op == "detached":
        gen.remote_detached()


_runtime: _Runtime | None = None


async def ensure_started() -> None:
    """Run this worker's background duties, and make sure its heartbeat is fresh right now."""
    global _runtime
    if not backplane.enabled():
        return
    if _runtime is None or _runtime.loop is not asyncio.get_running_loop():
        _runtime = _Runtime()
    if time.monotonic() - _runtime.last_beat > settings.CHAT_HEARTBEAT_S:
        await _runtime.beat()


async def stop() -> None:
    """Shutting down (after every answer here is stored): go quiet and stop claiming to be alive."""
    global _runtime
    if _runtime is None:
        return
    for task in _runtime.tasks:
        task.cancel()
    await asyncio.gather(*_runtime.tasks, return_exceptions=True)
    _runtime = None
    try:
        await backplane.heartbeat_clear()
    except Exception as exc:
        logger.warning("could not clear the heartbeat: %s", exc)
