"""Typed reads of the state store (redis-py's own annotations are too loose for strict typing)."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis


async def record(redis: Redis, key: str) -> dict[str, str]:
    """All fields of a hash ({} when absent)."""
    return cast(dict[str, str], await redis.hgetall(key))


async def members(redis: Redis, key: str, start: int = 0, stop: int = -1) -> list[str]:
    """Members of a sorted set by rank."""
    return cast(list[str], await redis.zrange(key, start, stop))


async def members_after(redis: Redis, key: str, after: str, count: int) -> list[str]:
    """Up to `count` members of a lexical sorted set after `after` ('' = from the start)."""
    start = f"({after}" if after else "-"
    return cast(list[str], await redis.zrangebylex(key, start, "+", start=0, num=count))


async def due(redis: Redis, key: str, max_score: float, count: int) -> list[str]:
    """Up to `count` members of a sorted set scored at most `max_score`."""
    return cast(list[str], await redis.zrangebyscore(key, "-inf", max_score, start=0, num=count))


async def records(redis: Redis, keys: list[str]) -> list[dict[str, str]]:
    """Several hashes in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        return cast(list[dict[str, str]], await pipe.execute())


async def fields(redis: Redis, keys: list[str], *names: str) -> list[list[str | None]]:
    """The same fields of several hashes in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, list(names))
        return cast(list[list[str | None]], await pipe.execute())


async def set_members(redis: Redis, key: str) -> list[str]:
    """Members of a set."""
    return sorted(cast(set[str], await redis.smembers(key)))
