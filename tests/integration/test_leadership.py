"""Scheduler leadership: one leader among several controllers, and a quick hand-over when it dies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.app import build_context
from controller.context import Context
from controller.scheduler import LEADER_TTL_MS, Scheduler
from tests.support.controller import close_context, settings_for


@pytest.fixture
async def contexts(redis_server: Any) -> AsyncIterator[list[Context]]:
    settings = settings_for(redis_server.url, "lead", scheduler_tick_seconds=0.1)
    made = [build_context(settings) for _ in range(3)]
    yield made
    for context in made:
        await close_context(context)


async def test_exactly_one_leader_and_a_new_one_within_seconds_after_it_dies(contexts: list[Context]) -> None:
    # Given three controllers running their scheduler loops
    schedulers = [Scheduler(context) for context in contexts]
    loops = [asyncio.create_task(scheduler.run()) for scheduler in schedulers]
    try:
        await asyncio.sleep(0.5)
        leaders = [index for index, scheduler in enumerate(schedulers) if scheduler.leading]
        assert len(leaders) == 1
        # When the leader dies without resigning
        loops[leaders[0]].cancel()
        died = time.monotonic()
        # Then another takes over within the lease time plus a tick, and only one leads
        while not any(s.leading for i, s in enumerate(schedulers) if i != leaders[0]):
            assert time.monotonic() - died < LEADER_TTL_MS / 1000 + 2.0
            await asyncio.sleep(0.05)
        successors = [i for i, s in enumerate(schedulers) if s.leading and i != leaders[0]]
        assert len(successors) == 1
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
