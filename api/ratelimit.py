"""Rate limits: token buckets in the process, or shared by every worker through Redis.

Without `CARTECO_REDIS_URL` each worker process counts on its own (with N workers a client gets
up to N times the limit). With it, every worker and every API machine draw from the same
bucket, kept in Redis by an atomic script (GCRA, the token bucket as one timestamp per key).
When Redis does not answer, the limiter falls back to the process's own buckets for a few
seconds rather than refusing or slowing requests: a rate limit must never take the service down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("carteco.ratelimit")

# Ten seconds' worth of requests may come at once.
BURST_SECONDS = 10.0
# After a Redis error, use the local buckets for this long before trying Redis again.
REDIS_RETRY_S = 5.0

# GCRA: the key holds the theoretical arrival time (ms) of the next request. A request is
# allowed when it would not push that time more than `burst` intervals ahead of now.
# Redis's own clock is used, so several API machines agree on "now".
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - now - burst * interval
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(new_tat - now))
return 0
"""


class RateLimiter(Protocol):
    """What the middleware needs: the seconds a client must wait (0 = go)."""

    async def wait(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        ...


class MemoryRateLimiter:
    """Token buckets keyed by client (IP or token hash), bounded in memory (LRU)."""

    def __init__(self, per_minute: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1.0, self.rate * BURST_SECONDS)
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.lock = threading.Lock()

    def allow(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self.buckets[key] = (tokens, now)
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        return wait

    async def wait(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        return self.allow(key)


class RedisRateLimiter:
    """One bucket per client shared through Redis; local buckets while Redis is away."""

    def __init__(
        self,
        redis: Any,
        name: str,
        per_minute: int,
        prefix: str = "carteco:",
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self.on_fallback = on_fallback
        self.per_minute = per_minute
        self.interval_ms = 60_000.0 / per_minute if per_minute > 0 else 0.0
        self.burst = max(1.0, per_minute / 60.0 * BURST_SECONDS)
        self.prefix = f"{prefix}rl:{name}:"
        self.script = redis.register_script(_GCRA)
        self.local = MemoryRateLimiter(per_minute)
        self._down_until = 0.0

    async def wait(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        if self.per_minute <= 0:
            return 0.0
        if time.monotonic() < self._down_until:
            return self.local.allow(key)
        try:
            ms = await self.script(keys=[self.prefix + key], args=[self.interval_ms, self.burst])
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fall back, never fail
            self._down_until = time.monotonic() + REDIS_RETRY_S
            if self.on_fallback is not None:
                self.on_fallback()
            log.warning(
                "rate limits: Redis unavailable (%s); per-process limits for %.0f s",
                type(exc).__name__,
                REDIS_RETRY_S,
            )
            return self.local.allow(key)
        return int(ms) / 1000.0


def make_limiter(
    redis: Any,
    name: str,
    per_minute: int,
    prefix: str,
    on_fallback: Callable[[], None] | None = None,
) -> RateLimiter:
    """The shared limiter when a Redis client is given, else the per-process one."""
    if redis is None:
        return MemoryRateLimiter(per_minute)
    return RedisRateLimiter(redis, name, per_minute, prefix, on_fallback)


def redis_client(url: str | None) -> Any:
    """An asyncio Redis client for `url` (connections made on first use), or None."""
    if not url:
        return None
    import redis.asyncio

    # Short timeouts: a slow Redis must cost a request milliseconds, not seconds.
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=0.25, socket_timeout=0.25, health_check_interval=30
    )
