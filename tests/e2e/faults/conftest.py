"""The pytest fixtures the fault tests share: a run marker, the process watch, a fault stack, its client, events.

A module that needs other controller or agent settings defines its own `stack_env` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard.client import BatchClient
from tests.support.faultstack import FaultStack, fault_stack
from tests.support.history import ProcessWatch, events_dir, new_marker


@pytest.fixture
def marker() -> str:
    """The marker every task of this test carries in its environment."""
    return new_marker()


@pytest.fixture
def watch(marker: str) -> Iterator[ProcessWatch]:
    """Samples the processes of this test's tasks while it runs."""
    with ProcessWatch(marker) as watching:
        yield watching


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Settings the stack's processes get on top of the fault stack's fast defaults."""
    return {}


@pytest.fixture
def stack(tmp_path: Path, stack_env: dict[str, str]) -> Iterator[FaultStack]:
    """Redis, Azurite and a controller of this test's own; agents are started by the test."""
    with fault_stack(tmp_path / "data", stack_env) as running:
        yield running


@pytest.fixture
def client(stack: FaultStack) -> Iterator[BatchClient]:
    """A signed REST client of the stack."""
    with stack.client() as signed:
        yield signed


@pytest.fixture
def events(stack: FaultStack) -> Path:
    """Where the tasks' recorded commands write their start and end files."""
    return events_dir(stack.layout.nodes_dir)
