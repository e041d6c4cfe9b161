"""Per-client rate limit: a token bucket of `per_minute` tokens refilled evenly, holding at most `burst`.
The client is the peer, or the right-most X-Forwarded-For address not a trusted proxy when the peer is one.
State lives in this worker, or in Redis (one atomic script) so the limit holds across workers and replicas."""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from drum_compat.shared.http import NeutralResponse, json_response

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
REDIS_KEY_PREFIX = "drum_compat:rate:"
STORE_TIMEOUT = 0.5  # seconds: an unreachable Redis must not hold requests (fail-open or 503 instead)
MAX_LOCAL_CLIENTS = 100_000  # the least recently seen client is forgotten past this (its bucket was full again)


def parse_networks(value: str) -> tuple[Network, ...]:
    """DRUM_TRUSTED_PROXIES: addresses or CIDR blocks separated by commas or spaces."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in value.replace(",", " ").split())


@dataclass(frozen=True)
class RateLimitPolicy:
    per_minute: int
    burst: int
    trusted_proxies: tuple[Network, ...] = ()
    fail_open: bool = True
    forwards: bool = True  # DRUM_RATE_LIMIT_PROXY: /directAccess/ and /nim/ count too

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_proxies)

    def client_of(self, peer: str | None, forwarded_for: str | None) -> str:
        """Whom to count this request against. X-Forwarded-For is believed only as far as trusted
        proxies wrote it: from the right, the first address that is not a trusted proxy."""
        peer = peer or "-"
        if not forwarded_for or not self._trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed chain: only the peer is known for sure
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tokens: float  # left after this request

    def retry_after(self, policy: RateLimitPolicy) -> int:
        return max(1, math.ceil((1 - self.tokens) / policy.per_second))

    def reset(self, policy: RateLimitPolicy) -> int:
        """Seconds until the bucket is full again."""
        return math.ceil((policy.burst - self.tokens) / policy.per_second)


def take_token(tokens: float, updated: float, now: float, policy: RateLimitPolicy) -> Decision:
    """The bucket arithmetic (the Redis script below does the same)."""
    tokens = min(float(policy.burst), tokens + max(0.0, now - updated) * policy.per_second)
    if tokens >= 1:
        return Decision(True, tokens - 1)
    return Decision(False, tokens)


class LocalBuckets:
    """One worker's buckets."""

    def __init__(self, policy: RateLimitPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> Decision:
        now = self.clock()
        tokens, updated = self._buckets.pop(client, (float(self.policy.burst), now))
        decision = take_token(tokens, updated, now, self.policy)
        self._buckets[client] = (decision.tokens, now)
        if len(self._buckets) > MAX_LOCAL_CLIENTS:
            self._buckets.popitem(last=False)
        return decision


# KEYS[1]: the client's bucket; ARGV: tokens per second, burst. Redis's own clock, so every replica agrees.
REDIS_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens)}
"""


def too_many_requests(decision: Decision, policy: RateLimitPolicy) -> NeutralResponse:
    headers = [
        ("Retry-After", str(decision.retry_after(policy))),
        ("RateLimit-Limit", str(policy.burst)),
        ("RateLimit-Remaining", "0"),
        ("RateLimit-Reset", str(decision.reset(policy))),
        ("RateLimit-Policy", f"{policy.burst};w={math.ceil(policy.burst / policy.per_second)}"),
    ]
    text = (f"Too many requests: {policy.per_minute} per minute with bursts of {policy.burst} allowed "
            "(DRUM_RATE_LIMIT_RPM, DRUM_RATE_LIMIT_BURST)")
    return json_response({"message": f"ERROR: {text}"}, 429, headers)


def store_unavailable() -> NeutralResponse:
    return json_response(
        {"message": "ERROR: The rate limit store (DRUM_RATE_LIMIT_REDIS_URL) is unreachable and "
                    "DRUM_RATE_LIMIT_FAIL_OPEN is false; retry later"},
        503, [("Retry-After", "1")],
    )


def redis_arguments(client: str, policy: RateLimitPolicy) -> tuple[list[str], list[str]]:
    return [REDIS_KEY_PREFIX + client], [repr(policy.per_second), str(policy.burst)]


def redis_decision(reply) -> Decision:
    allowed, tokens = reply
    return Decision(bool(int(allowed)), float(tokens))
