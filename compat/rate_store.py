"""The rate limit's Redis store as each stack talks to it: a blocking client for the Flask stack, an asyncio
one for the FastAPI stack, and the errors that mean "the store could not be asked"."""
from __future__ import annotations

import redis
import redis.asyncio
from redis.exceptions import RedisError

STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, RedisError)
connect_blocking = redis.Redis.from_url
connect_async = redis.asyncio.from_url
