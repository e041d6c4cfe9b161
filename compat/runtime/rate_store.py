"""The rate limit's token store as each stack asks it: `take(client)`, blocking for the Flask stack, awaited for
the FastAPI stack; in this worker, or in Redis (the core's script) when DRUM_RATE_LIMIT_REDIS_URL is set."""
from __future__ import annotations

from typing import Awaitable, Callable

from drum_compat.shared.guards.rate_limit import (REDIS_TOKEN_BUCKET, STORE_TIMEOUT, Decision, LocalBuckets, RateLimitPolicy,
                                                  redis_arguments, redis_decision)

Outcome = Decision | Exception
TIMEOUTS = {"socket_timeout": STORE_TIMEOUT, "socket_connect_timeout": STORE_TIMEOUT}


def store_errors() -> tuple[type[BaseException], ...]:
    """What "the store could not be asked" looks like; a take returns it instead of raising (the core decides).
    redis is imported only where a Redis is named: its import (OpenTelemetry's SDK with it) costs a worker's start."""
    from redis.exceptions import RedisError

    return OSError, RedisError


def blocking_store(policy: RateLimitPolicy | None, redis_url: str | None) -> Callable[[str], Outcome] | None:
    """None when the limit is off."""
    if policy is None:
        return None
    if not redis_url:
        return LocalBuckets(policy).take
    import redis

    errors = store_errors()
    script = redis.Redis.from_url(redis_url, **TIMEOUTS).register_script(REDIS_TOKEN_BUCKET)

    def take(client: str) -> Outcome:
        keys, args = redis_arguments(client, policy)
        try:
            return redis_decision(script(keys=keys, args=args))
        except errors as exc:
            return exc

    return take


def async_store(policy: RateLimitPolicy | None, redis_url: str | None) -> Callable[[str], Awaitable[Outcome]] | None:
    """None when the limit is off."""
    if policy is None:
        return None
    if not redis_url:
        local = LocalBuckets(policy)

        async def take_local(client: str) -> Outcome:
            return local.take(client)

        return take_local
    import redis.asyncio

    errors = store_errors()
    script = redis.asyncio.from_url(redis_url, **TIMEOUTS).register_script(REDIS_TOKEN_BUCKET)

    async def take(client: str) -> Outcome:
        keys, args = redis_arguments(client, policy)
        try:
            return redis_decision(await script(keys=keys, args=args))
        except errors as exc:
            return exc

    return take
