"""Connection to the state store."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError

RETRIES = 3
"""How often a command is retried on a broken connection (a restarted Redis closes every pooled one)."""


CONNECT_TIMEOUT_SECONDS = 5.0
"""How long opening a connection may take."""

REPLY_TIMEOUT_SECONDS = 10.0
"""How long a call may wait for Redis's reply by default (the controller's `redis_reply_timeout_seconds`)."""


def connect(url: str, reply_timeout: float, longest_block: float = 0.0) -> Redis:
    """An asyncio Redis client that returns strings and retries commands over a fresh connection.

    A reply that takes longer than `reply_timeout` (plus `longest_block`, the longest blocking wait a
    caller asks for, such as the scheduler's BLPOP) fails with TimeoutError. That is not retried: Redis
    may have run the command, and a Redis that stopped answering would only keep the caller longer.
    """
    return Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=15,
        socket_keepalive=True,
        socket_timeout=reply_timeout + longest_block,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        # Retry's own default would also retry TimeoutError.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES, supported_errors=(ConnectionError,)),
        retry_on_error=[ConnectionError],
    )
