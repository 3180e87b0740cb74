"""What request handlers and background loops share: settings, store, keys, scripts, broker, HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from redis.asyncio import Redis

from controller.dispatch import Dispatcher
from controller.providers.base import NodeProvider
from controller.settings import ControllerSettings
from controller.storage import AutoStorage
from controller.store.keys import Keys
from controller.store.transitions import Transitions
from controller.store.wire import Wire

if TYPE_CHECKING:
    # Only a type here: the scheduler runs on a context.
    from controller.scheduler import Refill


@dataclass
class Context:
    """One controller process's shared resources."""

    settings: ControllerSettings
    redis: Redis
    """redis-py: single commands that change state, blocking waits, the scheduler's lease."""
    wire: Wire
    """The multiplexed connection of scripts and reads (`controller.store.reads`), the per-task path."""
    keys: Keys
    transitions: Transitions
    dispatcher: Dispatcher
    http: httpx.AsyncClient
    storage: AutoStorage
    provider: NodeProvider
    refill: Callable[[str], Awaitable[Refill | None]] | None = None
    """Places queued tasks on one node's free slots at once (the scheduler's, when it runs here)."""

    @property
    def endpoint(self) -> str:
        """The public endpoint URL."""
        return self.settings.endpoint

    async def wake_scheduler(self) -> None:
        """Tell the scheduler there is work (a task queued or a slot freed)."""
        wake = self.keys.scheduler_wake()
        await self.wire.batch([("LPUSH", wake, "1"), ("LTRIM", wake, 0, 0)])
