"""Typed reads of the state store, over the controller's multiplexed connection (`controller.store.wire`)."""

from __future__ import annotations

from typing import cast

from controller.store.wire import Wire


def pairs(flat: list[str]) -> dict[str, str]:
    """A hash from HGETALL's flat field, value list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def record(wire: Wire, key: str) -> dict[str, str]:
    """All fields of a hash ({} when absent)."""
    return pairs(await wire.call("HGETALL", key))


async def members(wire: Wire, key: str, start: int = 0, stop: int = -1) -> list[str]:
    """Members of a sorted set by rank."""
    return cast(list[str], await wire.call("ZRANGE", key, start, stop))


async def members_after(wire: Wire, key: str, after: str, count: int) -> list[str]:
    """Up to `count` members of a lexical sorted set after `after` ('' = from the start)."""
    start = f"({after}" if after else "-"
    return cast(list[str], await wire.call("ZRANGEBYLEX", key, start, "+", "LIMIT", 0, count))


async def due(wire: Wire, key: str, max_score: float, count: int) -> list[str]:
    """Up to `count` members of a sorted set scored at most `max_score`."""
    return cast(list[str], await wire.call("ZRANGEBYSCORE", key, "-inf", repr(max_score), "LIMIT", 0, count))


async def records(wire: Wire, keys: list[str]) -> list[dict[str, str]]:
    """Several hashes in one round trip."""
    return [pairs(flat) for flat in await wire.batch([("HGETALL", key) for key in keys])]


async def fields(wire: Wire, keys: list[str], *names: str) -> list[list[str | None]]:
    """The same fields of several hashes in one round trip."""
    return cast(list[list[str | None]], await wire.batch([("HMGET", key, *names) for key in keys]))


async def set_members(wire: Wire, key: str) -> list[str]:
    """Members of a set."""
    return sorted(cast(list[str], await wire.call("SMEMBERS", key)))
