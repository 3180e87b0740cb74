"""Connection to the state store."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

RETRIES = 3
"""How often a command is retried on a broken connection (a restarted Redis closes every pooled one)."""


def connect(url: str) -> Redis:
    """An asyncio Redis client that returns strings and retries commands over a fresh connection."""
    return Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=15,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        retry_on_error=[ConnectionError, TimeoutError],
    )
