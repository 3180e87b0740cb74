"""How the agent's calls reach the controller: one POST in, its HTTP answer out.

`PooledTransport` keeps a few keep-alive connections (urllib3) and never
retries on its own: a POST that may have arrived is only sent again by the
caller's retry policy, which knows whether that is safe. Tests pass any
callable with the same signature instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import urllib3

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


class PooledTransport:
    """Calls over a small pool of keep-alive connections, thread-safe."""

    def __init__(self) -> None:
        self._pool = urllib3.PoolManager(
            maxsize=POOLED_CONNECTIONS,
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS),
        )

    def __call__(self, call: Call) -> Answer:
        """POST (or any method) `call`; its answer, whatever the status."""
        try:
            response = self._pool.request(
                call.method,
                call.url,
                body=call.body,
                headers=dict(call.headers),
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=call.timeout),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(str(exc)) from exc
        return Answer(response.status, response.data)

    def close(self) -> None:
        """Close every pooled connection."""
        self._pool.clear()
