"""How the agent's calls reach the controller: one POST in, its HTTP answer out.

`PooledTransport` keeps a few keep-alive connections (the standard library's
http.client, which urllib3 also builds on, without its pool, retry and URL
layers: half the CPU per call) and never retries on its own: a POST that may
have arrived is only sent again by the caller's retry policy, which knows
whether that is safe. Tests pass any callable with the same signature instead.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

CONNECT_TIMEOUT_SECONDS = 5.0
"""Longest wait for a TCP (and TLS) connection to the controller."""

POOLED_CONNECTIONS = 4
"""Keep-alive connections kept per controller: reports, heartbeats and claims may overlap."""


@dataclass(frozen=True)
class Call:
    """One signed request as it goes out."""

    method: str
    path: str
    """The raw path the signature covers (the controller URL's own path prefix included)."""
    url: str
    headers: Mapping[str, str]
    body: bytes
    timeout: float
    """Seconds to wait for the answer once connected."""


@dataclass(frozen=True)
class Answer:
    """The controller's HTTP answer."""

    status_code: int
    content: bytes = b""

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """The body as text, for logs."""
        return self.content.decode(errors="replace")


class Unreachable(Exception):
    """The call got no HTTP answer: refused, reset, timed out, or not even sent."""


class Transport(Protocol):
    """Sends one call; raises `Unreachable` when no answer came."""

    def __call__(self, call: Call) -> Answer: ...


Origin = tuple[str, str, int]
"""Scheme, host and port of a URL."""


class PooledTransport:
    """Calls over a small pool of keep-alive connections per origin, thread-safe; HTTPS verified as the system does."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def __call__(self, call: Call) -> Answer:
        """POST (or any method) `call`; its answer, whatever the status."""
        parts = urlsplit(call.url)
        origin = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection = self._take(origin)
        try:
            if connection.sock is None:
                connection.connect()
            connection.sock.settimeout(call.timeout)
            connection.request(call.method, target, body=call.body, headers=dict(call.headers))
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise Unreachable(f"{call.method} {call.url}: {exc!r}") from exc
        if response.will_close:
            connection.close()
        else:
            self._give(origin, connection)
        return Answer(response.status, content)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _take(self, origin: Origin) -> http.client.HTTPConnection:
        """An idle connection to `origin` the server has not closed, else a new (unconnected) one."""
        while True:
            with self._lock:
                pooled = self._idle.get(origin)
                connection = pooled.pop() if pooled else None
            if connection is None:
                return self._new(origin)
            if not _dropped(connection):
                return connection
            connection.close()

    def _give(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        """Keep a connection for the next call, unless the pool is full."""
        with self._lock:
            pooled = self._idle.setdefault(origin, [])
            if len(pooled) < POOLED_CONNECTIONS:
                pooled.append(connection)
                return
        connection.close()

    def _new(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme != "https":
            return http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_SECONDS)
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=CONNECT_TIMEOUT_SECONDS, context=self._tls)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (it is readable: EOF or an unasked-for answer)."""
    if connection.sock is None:
        return True
    poller = select.poll()
    poller.register(connection.sock, select.POLLIN)
    return bool(poller.poll(0))
