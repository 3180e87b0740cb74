"""Private `redis-server` and Azurite processes on free loopback ports, for tests that need the real thing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchyard import envfile, ports, procs, tools
from batchyard.readiness import http_answers, redis_answers, wait_until

STOP_GRACE_SECONDS = 10.0
"""How long a test server gets to stop after SIGTERM."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    return ports.free_port()


def in_ci() -> bool:
    """True on CI, where a missing dependency is a failure rather than a skip."""
    return os.environ.get("CI", "").lower() == "true"


def require_tool(find: Callable[[], str]) -> str:
    """The path `find` returns; when the tool is missing, fail on CI and skip (with the reason) elsewhere."""
    try:
        return find()
    except tools.ToolMissing as missing:
        if in_ci():
            pytest.fail(f"required on CI: {missing}")
        pytest.skip(str(missing))


@dataclass
class RedisServer:
    """A private redis-server with the append-only file on; `stop()` and `start()` keep its data."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    child: procs.Child | None = None
    options: list[str] = field(default_factory=list)
    """More `redis-server` options (`--unixsocket`, `--requirepass`, ...)."""

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://{ports.LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Start the server on the same port and directory, and wait for PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--bind", ports.LOOPBACK, "--port", str(self.port), "--appendonly", "yes",
                "--save", "", "--dir", str(self.directory), *self.options]  # fmt: skip
        self.child = procs.start("redis", argv, dict(os.environ), self.directory / "redis.log")
        wait_until(self.child, redis_answers(self.url), 20.0, "answering PING")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a grace)."""
        if self.child is not None:
            procs.stop_all([self.child], STOP_GRACE_SECONDS)
            self.child = None


@dataclass
class AzuriteServer:
    """A private Azurite blob service with a data directory."""

    binary: str
    location: Path
    port: int = field(default_factory=free_port)
    child: procs.Child | None = None
    account_name: str = envfile.DEV_ACCOUNT_NAME
    account_key: str = envfile.DEV_ACCOUNT_KEY

    @property
    def blob_endpoint(self) -> str:
        """Path-style blob endpoint of the development account."""
        return envfile.blob_endpoint(self.port)

    @property
    def connection_string(self) -> str:
        """Connection string for azure-storage-blob."""
        return envfile.connection_string(self.port)

    def start(self) -> None:
        """Start Azurite and wait for any HTTP answer."""
        self.location.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--blobHost", ports.LOOPBACK, "--blobPort", str(self.port), "--location",
                str(self.location), "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip
        self.child = procs.start("azurite", argv, dict(os.environ), self.location.parent / "azurite.log")
        wait_until(self.child, http_answers(self.blob_endpoint + "?comp=list"), 60.0, "answering HTTP")

    def stop(self) -> None:
        """Stop Azurite."""
        if self.child is not None:
            procs.stop_all([self.child], STOP_GRACE_SECONDS)
            self.child = None


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `condition()` holds; fail the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
