"""The controller's multiplexed Redis connection against real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from batchyard import tools
from controller.store import reads
from controller.store import redis as store_redis
from controller.store.wire import Address, Script, Wire
from tests.support.servers import RedisServer, require_tool

HUNG_CALL_BOUND_SECONDS = 20.0
"""A call to a hung Redis that has not failed by then would hang for good."""

COUNTER = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def wire(redis_server: Any) -> AsyncIterator[Wire]:
    connection = Wire(redis_server.url)
    yield connection
    await connection.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start, listening on a Unix socket too."""
    server = RedisServer(require_tool(tools.find_redis_server), tmp_path / "redis")
    server.options = ["--unixsocket", str(tmp_path / "redis.sock")]
    server.start()
    yield server
    server.stop()


def key() -> str:
    return f"wire-{uuid.uuid4().hex}"


async def test_concurrent_callers_each_get_their_own_reply(wire: Wire) -> None:
    keys = [key() for _ in range(200)]
    await wire.batch([("SET", name, f"value of {name}") for name in keys])

    replies = await asyncio.gather(*(wire.call("GET", name) for name in keys))

    assert replies == [f"value of {name}" for name in keys]


async def test_an_error_reply_is_raised_and_the_connection_serves_on(wire: Wire) -> None:
    name = key()
    await wire.call("SET", name, "text")

    with pytest.raises(ResponseError, match="not an integer"):
        await wire.call("INCR", name)

    assert await wire.call("GET", name) == "text"


async def test_a_batch_applies_every_command_and_raises_the_first_error_after_all_replies(wire: Wire) -> None:
    first, second = key(), key()

    with pytest.raises(ResponseError, match="wrong number of arguments"):
        await wire.batch([("SET", first, "1"), ("HSET", first), ("SET", second, "2")])

    assert await wire.batch([("GET", first), ("GET", second)]) == ["1", "2"]


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others(wire: Wire) -> None:
    name = key()
    await wire.call("SET", name, "mine")
    cancelled = asyncio.create_task(wire.call("SET", key(), "x"))
    await asyncio.sleep(0)  # its command is written; its reply not yet read
    cancelled.cancel()

    assert await wire.call("GET", name) == "mine"
    assert cancelled.cancelled()


async def test_scripts_run_by_sha_and_are_loaded_again_when_redis_forgot_them(wire: Wire) -> None:
    name = key()
    assert await wire.run(COUNTER, [name], [2]) == 2
    await wire.call("SCRIPT", "FLUSH")

    assert await wire.run_each(COUNTER, [([name], [3]), ([name], [4])]) == [5, 9]
    assert await wire.call("SCRIPT", "EXISTS", COUNTER.sha) == [1]


async def test_reads_return_typed_records(wire: Wire) -> None:
    first, second, missing = key(), key(), key()
    await wire.batch([("HSET", first, "a", "1", "b", "2"), ("HSET", second, "a", "3")])

    assert await reads.record(wire, first) == {"a": "1", "b": "2"}
    assert await reads.record(wire, missing) == {}
    assert await reads.records(wire, [first, missing, second]) == [{"a": "1", "b": "2"}, {}, {"a": "3"}]
    assert await reads.fields(wire, [first, second], "b", "a") == [["2", "1"], [None, "3"]]


async def test_a_restarted_redis_is_reconnected_to(own_redis: RedisServer) -> None:
    wire = Wire(own_redis.url)
    name = key()
    await wire.call("SET", name, "kept")
    own_redis.stop()
    own_redis.start()

    assert await wire.call("GET", name) == "kept"
    await wire.aclose()


async def test_calls_fail_with_connection_error_once_redis_stays_away(own_redis: RedisServer) -> None:
    wire = Wire(own_redis.url)
    await wire.call("PING")
    own_redis.stop()

    with pytest.raises(ConnectionError):
        await wire.call("PING")
    await wire.aclose()


async def test_unix_socket_password_and_database_from_the_url(own_redis: RedisServer, tmp_path: Path) -> None:
    admin = Redis.from_url(own_redis.url, decode_responses=True)
    await admin.config_set("requirepass", "s3cret")
    wire = Wire(f"unix://:s3cret@{tmp_path / 'redis.sock'}?db=3")
    name = key()

    await wire.call("SET", name, "in db 3")

    await admin.execute_command("AUTH", "s3cret")
    await admin.select(3)
    assert await admin.get(name) == "in db 3"
    await wire.aclose()
    await admin.aclose()


async def test_a_wrong_password_is_an_error_not_a_retry(own_redis: RedisServer) -> None:
    admin = Redis.from_url(own_redis.url, decode_responses=True)
    await admin.config_set("requirepass", "s3cret")
    wire = Wire(f"redis://:wrong@127.0.0.1:{own_redis.port}/0")

    with pytest.raises(ResponseError, match="WRONGPASS|invalid password"):
        await wire.call("PING")
    await admin.aclose()


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    """Redis hung: SIGSTOP (it keeps its connections and accepts new ones) until the block ends, then SIGCONT."""
    assert server.child is not None
    os.kill(server.child.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.child.pid, signal.SIGCONT)


async def connections_received(admin: Redis) -> int:
    """How many connections Redis has accepted so far (those a stopped Redis left queued included, once resumed)."""
    return int((await admin.info("stats"))["total_connections_received"])


async def test_calls_to_a_hung_redis_fail_with_a_timeout_and_the_next_call_reconnects(own_redis: RedisServer) -> None:
    wire = Wire(own_redis.url, reply_timeout=0.5)
    admin = Redis.from_url(own_redis.url)
    name = key()
    await wire.call("SET", name, "before")
    accepted = await connections_received(admin)
    with stopped(own_redis):
        calls = [wire.call("GET", name), wire.batch([("PING",), ("GET", name)])]
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), HUNG_CALL_BOUND_SECONDS)
    assert [type(outcome) for outcome in outcomes] == [TimeoutError, TimeoutError]
    assert await connections_received(admin) == accepted, "a call that timed out was sent again"

    assert await wire.call("GET", name) == "before"
    await wire.aclose()
    await admin.aclose()


async def test_a_slow_reply_within_the_timeout_is_waited_for(own_redis: RedisServer) -> None:
    wire = Wire(own_redis.url, reply_timeout=2.0)
    await wire.call("PING")
    with stopped(own_redis):
        pending = asyncio.ensure_future(wire.call("PING"))
        await asyncio.sleep(0.5)
    assert await asyncio.wait_for(pending, HUNG_CALL_BOUND_SECONDS) == "PONG"
    await wire.aclose()


async def test_the_redis_py_client_times_out_on_a_hung_redis_without_retrying(own_redis: RedisServer) -> None:
    client = store_redis.connect(own_redis.url, reply_timeout=0.5)
    admin = Redis.from_url(own_redis.url)
    await client.set("hung", "before")
    accepted = await connections_received(admin)
    with stopped(own_redis), pytest.raises(TimeoutError):
        await asyncio.wait_for(client.get("hung"), HUNG_CALL_BOUND_SECONDS)
    assert await connections_received(admin) == accepted, "the command that timed out was sent again"
    assert await client.get("hung") == "before"
    await client.aclose()
    await admin.aclose()


def test_addresses_from_urls() -> None:
    assert Address.parse("redis://127.0.0.1:6390/2") == Address(port=6390, db=2)
    assert Address.parse("rediss://user:p%40ss@redis.example:6380") == Address(
        host="redis.example", port=6380, tls=True, username="user", password="p@ss"
    )
    assert Address.parse("unix:///run/redis.sock?db=1") == Address(path="/run/redis.sock", db=1)
    with pytest.raises(ValueError, match="redis://"):
        Address.parse("http://127.0.0.1:6379")
