"""Waiting for a started child to answer, failing fast with its log when it dies first."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import redis

from batchyard.procs import Child

POLL_SECONDS = 0.1
"""Pause between readiness probes."""

PROBE_TIMEOUT_SECONDS = 2.0
"""Longest one probe may take."""


class StartupFailed(Exception):
    """A child exited or did not answer in time; the message names it and shows the end of its log."""

    def __init__(self, child: Child, reason: str) -> None:
        tail = child.tail() or "(its log is empty)"
        super().__init__(f"{child.name} {reason}; the end of {child.log_path}:\n{tail}")
        self.child = child


def wait_until(child: Child, probe: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `probe` until it returns True; raise StartupFailed if the child exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise StartupFailed(child, f"exited with code {child.process.returncode} before {what}")
        if probe():
            return
        if time.monotonic() >= deadline:
            raise StartupFailed(child, f"was not {what} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def redis_answers(url: str) -> Callable[[], bool]:
    """A probe that is True once Redis answers PING."""

    def probe() -> bool:
        client = redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_SECONDS)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    return probe


def http_answers(url: str, status: int | None = None) -> Callable[[], bool]:
    """A probe that is True once `url` gives any HTTP answer, or exactly `status` when given."""

    def probe() -> bool:
        try:
            response = httpx.get(url, timeout=PROBE_TIMEOUT_SECONDS)
        except httpx.HTTPError:
            return False
        return status is None or response.status_code == status

    return probe
