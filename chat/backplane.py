"""What the worker processes share: Redis when REDIS_URL is set; nothing in one process.

Everything a second worker needs to know about an answer running elsewhere goes through here:
whether its worker is alive (a heartbeat key with a TTL), how to ask it to stop (a message on
that worker's control channel plus a durable flag, because pub/sub delivers at most once), and
who still follows it (follower leases). The event log itself is in `redislog` and `remote`.

In the default single-process mode `enabled()` is false: the only live worker is this one,
nobody else follows, and a cancel only ever concerns this process.
"""

import asyncio
import json
import os
import socket
import time
import uuid

import redis
import redis.asyncio
from django.conf import settings

# This process's identity, stamped on the answers it generates.
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def enabled() -> bool:
    return bool(settings.REDIS_URL)


def key(*parts: object) -> str:
    return settings.CHAT_REDIS_PREFIX + ":".join(str(p) for p in parts)


_client: redis.asyncio.Redis | None = None
_client_loop: asyncio.AbstractEventLoop | None = None


def client() -> redis.asyncio.Redis:
    """This event loop's Redis client (a connection pool belongs to one loop)."""
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        # Each answer followed here from another worker holds a connection in a blocking XREAD.
        _client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, health_check_interval=30, max_connections=settings.CHAT_REDIS_MAX_CONNECTIONS
        )
        _client_loop = loop
    return _client


def sync_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


# --- worker liveness ---------------------------------------------------------------------------


async def heartbeat() -> None:
    """Say this worker is alive for the next CHAT_WORKER_TTL_S seconds."""
    await client().set(key("worker", WORKER_ID), int(time.time()), px=int(settings.CHAT_WORKER_TTL_S * 1000))


async def heartbeat_clear() -> None:
    await client().delete(key("worker", WORKER_ID))


async def worker_alive(worker_id: str) -> bool:
    """Whether the worker that stamped an answer still runs (in one process: only this one)."""
    if worker_id == WORKER_ID:
        return True
    if not enabled() or not worker_id:
        return False
    return bool(await client().exists(key("worker", worker_id)))


async def alive_workers(worker_ids: set[str]) -> set[str]:
    """The live ones among these workers, in one round trip."""
    others = sorted(w for w in worker_ids if w and w != WORKER_ID)
    alive = {WORKER_ID} & worker_ids
    if not enabled() or not others:
        return alive
    async with client().pipeline(transaction=False) as pipe:
        for w in others:
            pipe.exists(key("worker", w))
        found = await pipe.execute()
    return alive | {w for w, n in zip(others, found, strict=True) if n}


def alive_workers_sync(worker_ids: set[str]) -> set[str]:
    """`alive_workers` for start-up code that runs before any event loop."""
    others = sorted(w for w in worker_ids if w and w != WORKER_ID)
    alive = {WORKER_ID} & worker_ids
    if not enabled() or not others:
        return alive
    with sync_client() as r:
        found = [r.exists(key("worker", w)) for w in others]
    return alive | {w for w, n in zip(others, found, strict=True) if n}


# --- cancel: a message to the generating worker, and a flag it also checks -------------------


def control_channel(worker_id: str) -> str:
    return key("control", worker_id)


async def send_control(worker_id: str, op: str, message_id: int, **data: object) -> None:
    await client().publish(control_channel(worker_id), json.dumps({"op": op, "message_id": message_id, **data}))


async def request_cancel(worker_id: str, message_id: int, status: str) -> None:
    """Ask the worker running an answer to end it with `status`, even if the message is lost."""
    async with client().pipeline(transaction=False) as pipe:
        pipe.set(key("cancel", message_id), status, ex=3600, nx=True)  # the first reason wins
        pipe.publish(
            control_channel(worker_id), json.dumps({"op": "cancel", "message_id": message_id, "status": status})
        )
        await pipe.execute()


async def cancel_requested(message_ids: list[int]) -> dict[int, str]:
    """The status a cancel asked for, by message id, for those of `message_ids` that have one
    (asked from any worker): one round trip however many answers run here."""
    if not enabled() or not message_ids:
        return {}
    values = await client().mget([key("cancel", message_id) for message_id in message_ids])
    return {message_id: value.decode() for message_id, value in zip(message_ids, values, strict=True) if value}


# --- followers on other workers: leases --------------------------------------------------------


async def lease_renew(message_id: int) -> None:
    """This worker follows the answer for the next CHAT_LEASE_S seconds."""
    k = key("followers", message_id)
    async with client().pipeline(transaction=False) as pipe:
        pipe.zadd(k, {WORKER_ID: time.time() + settings.CHAT_LEASE_S})
        pipe.expire(k, int(settings.CHAT_LEASE_S) + 60)
        await pipe.execute()


async def lease_drop(message_id: int) -> None:
    await client().zrem(key("followers", message_id), WORKER_ID)


async def remote_followers(message_id: int) -> int:
    """How many other workers hold an unexpired lease on the answer."""
    if not enabled():
        return 0
    return await client().zcount(key("followers", message_id), f"({time.time()}", "+inf")
