"""Connection to the state store."""

from __future__ import annotations

from redis.asyncio import Redis


def connect(url: str) -> Redis:
    """An asyncio Redis client that returns strings."""
    return Redis.from_url(url, decode_responses=True, health_check_interval=15, socket_keepalive=True)
