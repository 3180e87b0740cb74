"""The controller's own Redis connection for scripts and reads: one multiplexed connection, replies by hiredis.

Every caller shares one connection. A call writes its commands at once and waits for as many replies;
Redis answers in the order commands arrive, so each reply goes to the oldest waiting caller. A round trip
costs about a third of the client CPU of redis-py's asyncio client (its connection pool, retry and
notification layers), and a report call makes a dozen of them.

Not for blocking commands (BLPOP would hold up every caller behind it) nor for MULTI/WATCH, whose state
belongs to a connection: those use redis-py (`controller.store.redis`).

A broken connection fails the calls waiting on it; each is sent again over a fresh connection, up to
`RETRIES` times with a growing pause, as redis-py is configured to do (a restarted Redis closes it).
A Redis that stops answering without closing the connection (stopped, hung, its host gone) would keep
every caller waiting: when calls have waited `reply_timeout` seconds without a byte of reply, the
connection is dropped and they fail with redis's TimeoutError, which is not retried (Redis may have run the
commands), so an API call answers 503 instead of hanging. The next call opens a fresh connection.
Scripts run by SHA; one Redis does not know (restarted, or flushed) is loaded and run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import hiredis
from redis.exceptions import BusyLoadingError, ConnectionError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as ReplyTimeoutError

from controller.store.redis import CONNECT_TIMEOUT_SECONDS, REPLY_TIMEOUT_SECONDS, RETRIES

Arg = str | int | float | bytes
"""One argument of a command."""
Command = Sequence[Arg]

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0


@dataclass(frozen=True)
class Address:
    """Where Redis listens and how to log in, from a `redis://`, `rediss://` or `unix://` URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    """A Unix socket path (`unix://` URLs); host and port are then unused."""
    tls: bool = False
    username: str = ""
    password: str = ""
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> Address:
        """The address a Redis URL names (the database from the path or `?db=`)."""
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
        query = parse_qs(parsed.query)
        path = unquote(parsed.path)
        db_text = query.get("db", [""])[0] or ("" if parsed.scheme == "unix" else path.strip("/"))
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 6379,
            path=path if parsed.scheme == "unix" else "",
            tls=parsed.scheme == "rediss",
            username=unquote(parsed.username or ""),
            password=unquote(parsed.password or ""),
            db=int(db_text or 0),
        )


class Script:
    """A Lua script, run by its SHA1."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def error_of(reply: Any) -> RedisError | None:
    """The exception an error reply stands for (None for any other reply)."""
    if not isinstance(reply, hiredis.ReplyError):
        return None
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("LOADING"):
        # A restarted Redis loading its data set: a ConnectionError, so the API answers 503 as for a down one.
        return BusyLoadingError(message)
    return ResponseError(message)


class _Replies(asyncio.Protocol):
    """One connection: writes commands and hands each reply to the oldest waiting future."""

    def __init__(self, reply_timeout: float) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = self.loop.create_future()
        """Done once the connection is gone."""
        self.reply_timeout = reply_timeout
        self.progress = self.loop.time()
        """When Redis last sent bytes, or when a call started waiting while none was."""
        self.watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._watch_later()

    def _watch_later(self) -> None:
        """Check for a silent Redis a quarter of the timeout from now."""
        self.watch = self.loop.call_later(max(self.reply_timeout / 4, 0.05), self._check_silence)

    def _check_silence(self) -> None:
        """Drop the connection when calls have waited `reply_timeout` with no reply at all; else check again."""
        silent = self.loop.time() - self.progress
        if self.waiting and silent >= self.reply_timeout and self.transport is not None:
            self._fail_waiting(ReplyTimeoutError(f"Redis sent no reply for {silent:.1f} s; connection dropped"))
            self.transport.abort()
            return
        self._watch_later()

    def _fail_waiting(self, error: Exception) -> None:
        """Fail every call still waiting for a reply."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def data_received(self, data: bytes) -> None:
        self.progress = self.loop.time()
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                waiter = self.waiting.popleft()
                if not waiter.done():  # its caller was cancelled: the reply is dropped
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as error:
            assert self.transport is not None
            self.transport.abort()
            self.connection_lost(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.watch is not None:
            self.watch.cancel()
        if not self.closed.done():
            self.closed.set_result(None)
        self._fail_waiting(ConnectionError(f"Redis connection lost: {exc}" if exc else "Redis closed the connection"))

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    async def exchange(self, payload: bytes, count: int) -> list[Any]:
        """Write `count` packed commands at once; their replies."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("Redis connection closed")
        if not self.waiting:
            self.progress = self.loop.time()
        futures = [self.loop.create_future() for _ in range(count)]
        self.waiting.extend(futures)
        self.transport.write(payload)
        return [await future for future in futures]

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await self.closed


class Wire:
    """A Redis connection shared by every caller of one event loop, opened on first use."""

    def __init__(self, url: str, reply_timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
        self.address = Address.parse(url)
        self.reply_timeout = reply_timeout
        self._replies: _Replies | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None

    async def call(self, *command: Arg) -> Any:
        """One command's reply; an error reply is raised as the exception `error_of` gives."""
        return raise_errors(await self.replies([command]))[0]

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands in one write and round trip; their replies, the first error reply raised."""
        return raise_errors(await self.replies(commands))

    async def replies(self, commands: Sequence[Command]) -> list[Any]:
        """Several commands in one round trip; their replies, error replies among them as `hiredis.ReplyError`."""
        if not commands:
            return []
        payload = pack(commands)
        failures = 0
        while True:
            try:
                return await (await self._connected()).exchange(payload, len(commands))
            except (ConnectionError, OSError, TimeoutError) as error:
                failures += 1
                if failures > RETRIES:
                    raise ConnectionError(f"Redis unavailable: {error}") from error
                await asyncio.sleep(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**failures))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script once; its reply."""
        return (await self.run_each(script, [(keys, args)]))[0]

    async def run_each(self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Arg]]]) -> list[Any]:
        """Run a script once per (keys, args) in one round trip, each run atomic on its own; their replies."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = await self.replies(commands)
        unknown = [index for index, reply in enumerate(replies) if isinstance(error_of(reply), NoScriptError)]
        if unknown:
            await self.call("SCRIPT", "LOAD", script.source)
            again = await self.replies([commands[index] for index in unknown])
            for index, reply in zip(unknown, again, strict=True):
                replies[index] = reply
        return raise_errors(replies)

    async def aclose(self) -> None:
        """Close the connection (the next call opens a new one)."""
        replies, self._replies = self._replies, None
        if replies is not None and self._loop is asyncio.get_running_loop():
            await replies.close()

    async def _connected(self) -> _Replies:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a test's, or after a restart): the old connection belongs to the old loop.
            self._loop, self._replies, self._opening = loop, None, asyncio.Lock()
        if self._replies is not None and self._replies.open:
            return self._replies
        assert self._opening is not None
        async with self._opening:
            if self._replies is None or not self._replies.open:
                self._replies = await asyncio.wait_for(self._open(loop), CONNECT_TIMEOUT_SECONDS)
            return self._replies

    def _protocol(self) -> _Replies:
        return _Replies(self.reply_timeout)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Replies:
        address = self.address
        if address.path:
            _, replies = await loop.create_unix_connection(self._protocol, address.path)
        else:
            context = ssl.create_default_context() if address.tls else None
            _, replies = await loop.create_connection(self._protocol, address.host, address.port, ssl=context)
        hello: list[Command] = []
        if address.password:
            login = (address.username, address.password) if address.username else (address.password,)
            hello.append(("AUTH", *login))
        if address.db:
            hello.append(("SELECT", address.db))
        if hello:
            try:
                raise_errors(await replies.exchange(pack(hello), len(hello)))
            except RedisError:  # refused, or Redis still loading: the new connection is not kept open
                await replies.close()
                raise
        return replies


def pack(commands: Sequence[Command]) -> bytes:
    """Commands in the Redis protocol, ready to write at once."""
    return b"".join(hiredis.pack_command(tuple(command)) for command in commands)  # type: ignore[arg-type]


def raise_errors(replies: list[Any]) -> list[Any]:
    """The replies, unless one is an error reply: then the first such error is raised."""
    for reply in replies:
        if (error := error_of(reply)) is not None:
            raise error
    return replies
