"""Fixtures that run real processes: a private Redis, Azurite, and a whole `batchyard up` stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard import tools
from tests.support.batch import close_clients
from tests.support.servers import AzuriteServer, RedisServer, require_tool
from tests.support.stack import LocalStack


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server (AOF on) on a free port: `.url`, `.port`, `.stop()`, `.start()`."""
    server = RedisServer(require_tool(tools.find_redis_server), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """Private Azurite blob: `.connection_string`, `.blob_endpoint`, `.port`, `.account_name`, `.account_key`."""
    server = AzuriteServer(require_tool(tools.find_azurite), tmp_path_factory.mktemp("azurite") / "data")
    server.start()
    yield server
    server.stop()


def _run_stack(data_dir: Path) -> Iterator[LocalStack]:
    """Start a real `batchyard up` (2 agents x 4 slots), yield it, and check it stops cleanly."""
    require_tool(tools.find_redis_server)
    require_tool(tools.find_azurite)
    stack = LocalStack(data_dir)
    stack.start()
    yield stack
    close_clients(stack)
    code = stack.stop()
    assert code in (None, 0), f"batchyard up exited with code {code}; see {stack.log_path}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    """A whole local stack for one test."""
    yield from _run_stack(tmp_path / "data")


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A whole local stack shared by the tests of one module."""
    yield from _run_stack(tmp_path_factory.mktemp("stack") / "data")
