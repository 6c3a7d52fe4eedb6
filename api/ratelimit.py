"""Rate limits: token buckets in the process, or shared by every worker through Redis.

Without `CARTECO_REDIS_URL` each worker process counts on its own (with N workers a client gets
up to N times the limit). With it, every worker and every API machine draw from the same
bucket, kept in Redis by an atomic script (GCRA, the token bucket as one timestamp per key).
When Redis does not answer, the limiter falls back to the process's own buckets for a few
seconds rather than refusing or slowing requests: a rate limit must never take the service down.

Every limiter keys on `client_address`: the socket's peer, or — only when that peer is one of
the configured trusted proxies — the right-most address of the forwarding header that is not
itself a trusted proxy (anything left of it was written by the client and proves nothing).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from starlette.types import Scope

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
# The same arithmetic without taking a token: would a request be refused now?
_GCRA_PEEK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat + interval - now - burst * interval
if wait > 0 then return math.ceil(wait) end
return 0
"""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The reverse proxies whose forwarding header is believed (setting `trusted_proxies`)."""

    def __init__(self, networks: list[str], header: str = "x-forwarded-for") -> None:
        self.networks: list[Network] = []
        for n in networks:
            try:
                self.networks.append(ipaddress.ip_network(n.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"trusted_proxies : adresse ou réseau invalide {n!r}") from exc
        self.header = header.lower().encode()

    def trusts(self, address: str) -> bool:
        """Whether `address` (already normalised) is one of the trusted proxies."""
        ip = _ip(address)
        return ip is not None and any(ip in n for n in self.networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=4096)  # a pure function of the text; peers repeat, so each is parsed once
def _normalise(value: str) -> str:
    """`"[2001:db8::1]:4711"`, `192.0.2.1:80`, `::ffff:1.2.3.4` → the bare, canonical address."""
    v = value.strip().strip('"').strip()
    if v.startswith("["):
        v = v[1 : v.find("]")] if "]" in v else v[1:]
    elif v.count(":") == 1:
        v = v.split(":", 1)[0]
    ip = _ip(v)
    # Not an address (RFC 7239 "unknown" or an obfuscated id): kept as a bounded opaque key.
    return str(ip) if ip is not None else v.lower()[:64] or "-"


def _forwarded_chain(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every hop of the forwarding header, left (first client) to right (last proxy)."""
    hops: list[str] = []
    for key, raw in headers:
        if key.lower() != name:
            continue
        for element in raw.decode("latin-1").split(","):
            if name == b"forwarded":
                pairs = (p.partition("=") for p in element.split(";"))
                found = [v for k, _, v in pairs if k.strip().lower() == "for"]
                if found:
                    hops.append(_normalise(found[0]))
            elif element.strip():
                hops.append(_normalise(element))
    return hops


def client_address(scope: Scope, proxies: TrustedProxies) -> str:
    """The client's address: the socket's peer, or what trusted proxies say it is."""
    peer = _normalise(str((scope.get("client") or ("-", 0))[0]))
    if not proxies.networks or not proxies.trusts(peer):
        return peer
    hops = _forwarded_chain(list(scope.get("headers") or []), proxies.header)
    # Right to left: each trusted proxy vouches for the hop before it; the first address not
    # a proxy of ours is the client. Left of it, everything is the client's own claim.
    for hop in reversed(hops):
        if not proxies.trusts(hop):
            return hop
    return hops[0] if hops else peer


class RateLimiter(Protocol):
    """What the middleware needs: the seconds a client must wait (0 = go)."""

    async def wait(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        ...

    async def peek(self, key: str) -> float:
        """Like `wait`, without counting a request."""
        ...


class MemoryRateLimiter:
    """Token buckets keyed by client (IP or token hash), bounded in memory (LRU)."""

    def __init__(
        self, per_minute: int, max_keys: int = 100_000, burst: float | None = None
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst or max(1.0, self.rate * BURST_SECONDS)
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

    def check(self, key: str) -> float:
        """What `allow` would answer, without taking a token."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    async def peek(self, key: str) -> float:
        """Like `wait`, without counting a request."""
        return self.check(key)


class RedisRateLimiter:
    """One bucket per client shared through Redis; local buckets while Redis is away."""

    def __init__(
        self,
        redis: Any,
        name: str,
        per_minute: int,
        prefix: str = "carteco:",
        on_fallback: Callable[[], None] | None = None,
        burst: float | None = None,
    ) -> None:
        self.redis = redis
        self.on_fallback = on_fallback
        self.per_minute = per_minute
        self.interval_ms = 60_000.0 / per_minute if per_minute > 0 else 0.0
        self.burst = burst or max(1.0, per_minute / 60.0 * BURST_SECONDS)
        self.prefix = f"{prefix}rl:{name}:"
        self.script = redis.register_script(_GCRA)
        self.peek_script = redis.register_script(_GCRA_PEEK)
        self.local = MemoryRateLimiter(per_minute, burst=self.burst)
        self._down_until = 0.0

    async def wait(self, key: str) -> float:
        """0 when the request may go, else the seconds to wait."""
        return await self._run(self.script, self.local.allow, key)

    async def peek(self, key: str) -> float:
        """Like `wait`, without counting a request."""
        return await self._run(self.peek_script, self.local.check, key)

    async def _run(self, script: Any, local: Callable[[str], float], key: str) -> float:
        if self.per_minute <= 0:
            return 0.0
        if time.monotonic() < self._down_until:
            return local(key)
        try:
            ms = await script(keys=[self.prefix + key], args=[self.interval_ms, self.burst])
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fall back, never fail
            self._down_until = time.monotonic() + REDIS_RETRY_S
            if self.on_fallback is not None:
                self.on_fallback()
            log.warning(
                "rate limits: Redis unavailable (%s); per-process limits for %.0f s",
                type(exc).__name__,
                REDIS_RETRY_S,
            )
            return local(key)
        return int(ms) / 1000.0


def make_limiter(
    redis: Any,
    name: str,
    per_minute: int,
    prefix: str,
    on_fallback: Callable[[], None] | None = None,
    burst: float | None = None,
) -> RateLimiter:
    """The shared limiter when a Redis client is given, else the per-process one."""
    if redis is None:
        return MemoryRateLimiter(per_minute, burst=burst)
    return RedisRateLimiter(redis, name, per_minute, prefix, on_fallback, burst)


def redis_client(url: str | None) -> Any:
    """An asyncio Redis client for `url` (connections made on first use), or None."""
    if not url:
        return None
    import redis.asyncio

    # Short timeouts: a slow Redis must cost a request milliseconds, not seconds.
    return redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=0.25, socket_timeout=0.25, health_check_interval=30
    )
