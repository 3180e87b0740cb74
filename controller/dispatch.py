"""The only module that talks to Celery: offers attempts to node queues."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery

from controller.store.redis import CONNECT_TIMEOUT_SECONDS, REPLY_TIMEOUT_SECONDS
from nodeagent.messages import RUN_ATTEMPT_TASK, Dispatch, Offer, node_queue

log = logging.getLogger(__name__)


def make_celery(broker_url: str, key_prefix: str, reply_timeout: float = REPLY_TIMEOUT_SECONDS) -> Celery:
    """A send-only Celery app configured like the agents' (JSON only, shared key prefix).

    A publish that gets no reply within `reply_timeout` fails and its connection is replaced, so a
    stopped or unreachable broker delays the scheduler by a few timeouts instead of blocking it.
    """
    app = Celery("batchyard-controller", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=CONNECT_TIMEOUT_SECONDS,
        broker_transport_options={
            "global_keyprefix": key_prefix,
            "visibility_timeout": 600,
            "socket_timeout": reply_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "socket_keepalive": True,
        },
    )
    return app


def by_node(dispatches: list[Dispatch]) -> list[Dispatch]:
    """The dispatches merged into one per node, offers in their order."""
    offers: dict[str, list[Offer]] = {}
    for dispatch in dispatches:
        offers.setdefault(dispatch.node_id, []).extend(dispatch.offers)
    return [Dispatch(node_id=node_id, offers=made) for node_id, made in offers.items()]


class Dispatcher:
    """Sends `Dispatch` messages, one per node; the store, not the broker, is the record of what was offered."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send_all(self, dispatches: list[Dispatch]) -> None:
        """Publish several offers over one connection (blocking)."""
        with self.app.producer_or_acquire() as producer:
            for dispatch in by_node(dispatches):
                self.app.send_task(
                    RUN_ATTEMPT_TASK,
                    kwargs={"dispatch": dispatch.model_dump(mode="json")},
                    queue=node_queue(dispatch.node_id),
                    ignore_result=True,
                    producer=producer,
                )

    async def publish(self, dispatches: list[Dispatch]) -> None:
        """Publish offers from async code without blocking the event loop; failures are logged.

        A lost publish is repaired by the reconciler, which offers unclaimed attempts again.
        """
        if not dispatches:
            return
        try:
            await asyncio.to_thread(self.send_all, dispatches)
        except Exception as error:  # noqa: BLE001 - any broker failure is retried by the reconciler
            log.warning("publishing offers to %d nodes failed: %s", len(dispatches), error)

    def close(self) -> None:
        """Release broker connections."""
        pool: Any = self.app.pool
        pool.force_close_all()
