"""How much one user, and one process, may ask for: answered before anything is stored.

- Messages per user per minute (CHAT_USER_RATE_PER_MIN): a sliding window of the last 60 s, in
  Redis when REDIS_URL is set (one sorted set per user, checked and added to by one script, so
  every worker counts the same posts), else in this process. A refused post is refunded, so a
  409 or a 429 for another reason does not use up the minute.
- Answers streaming at once per user (CHAT_USER_CONCURRENCY) are counted in the database, where
  every worker's answers are (services, under the user's row lock).
- Answers streaming at once in this process (CHAT_MAX_STREAMS), and a draining process, refuse
  with 503: another worker behind the proxy can take the post.
"""

import time
import uuid
from collections import deque

from django.conf import settings

from . import backplane

WINDOW_S = 60.0

# KEYS[1] the user's window; ARGV: now (ms), window (ms), limit, member. Returns 0 when taken,
# else the milliseconds until the oldest post in the window leaves it.
_TAKE = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class Ticket:
    """One post counted against its user's minute; `refund()` takes it back."""

    def __init__(self, user_id: int, member: str | None) -> None:
        self.user_id, self.member = user_id, member

    async def refund(self) -> None:
        if self.member is None:
            return
        if backplane.enabled():
            await backplane.client().zrem(_key(self.user_id), self.member)
        else:
            window = _local.get(self.user_id, ())
            _local[self.user_id] = deque(p for p in window if p[1] != self.member)


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


async def take_message(user_id: int) -> Ticket:
    """Count one post by this user, or raise RateLimited with the seconds until one is allowed."""
    limit = settings.CHAT_USER_RATE_PER_MIN
    if limit <= 0:
        return Ticket(user_id, None)
    member = uuid.uuid4().hex
    if backplane.enabled():
        now_ms = int(time.time() * 1000)
        wait_ms = await backplane.client().eval(_TAKE, 1, _key(user_id), now_ms, int(WINDOW_S * 1000), limit, member)
        if wait_ms:
            raise RateLimited(int(wait_ms) / 1000)
        return Ticket(user_id, member)
    return _take_local(user_id, limit, member)


def _key(user_id: int) -> str:
    return backplane.key("rate", user_id)


# user id -> (monotonic time, member) of each post in the last minute, oldest first
_local: dict[int, deque] = {}


def _take_local(user_id: int, limit: int, member: str) -> Ticket:
    now = time.monotonic()
    window = _local.setdefault(user_id, deque())
    while window and window[0][0] <= now - WINDOW_S:
        window.popleft()
    if len(window) >= limit:
        raise RateLimited(window[0][0] + WINDOW_S - now)
    window.append((now, member))
    return Ticket(user_id, member)
