"""Publishing offers to a real redis-server broker, and what a stopped broker does to the publisher."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from batchyard import tools
from controller.dispatch import Dispatcher, make_celery
from nodeagent.messages import Dispatch, Offer, node_queue
from tests.support.servers import RedisServer, require_tool

PREFIX = "dispatch-test:"
REPLY_TIMEOUT_SECONDS = 1.0
HANG_LIMIT_SECONDS = 30.0
"""Far longer than a publish that gives up should take: reaching it means the publish hung."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and continue."""
    server = RedisServer(require_tool(tools.find_redis_server), tmp_path / "broker")
    server.start()
    yield server
    if server.child is not None:
        os.kill(server.child.pid, signal.SIGCONT)
    server.stop()


def _offer(node_id: str, task_id: str) -> Dispatch:
    return Dispatch(node_id=node_id, offers=[Offer(attempt_id=f"a-{task_id}", job_id="job", task_id=task_id)])


def _queued(broker: RedisServer, node_id: str) -> list[str]:
    """The task ids of the offers waiting in a node's queue (kombu keeps each body base64-encoded)."""
    with redis.Redis.from_url(broker.url) as client:
        envelopes = client.lrange(PREFIX + node_queue(node_id), 0, -1)
    bodies = [json.loads(base64.b64decode(json.loads(envelope)["body"])) for envelope in envelopes]
    return [offer["task_id"] for body in bodies for offer in body[1]["dispatch"]["offers"]]


async def _publish(dispatcher: Dispatcher, dispatch: Dispatch) -> None:
    """One publish; fails the test when it does not return."""
    await asyncio.wait_for(dispatcher.publish([dispatch]), HANG_LIMIT_SECONDS)


async def test_a_stopped_broker_fails_the_publish_instead_of_hanging_it(
    broker: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert broker.child is not None
    dispatcher = Dispatcher(make_celery(broker.url, PREFIX, REPLY_TIMEOUT_SECONDS))
    try:
        # Given a publisher that has delivered to the broker
        await _publish(dispatcher, _offer("n1", "t1"))
        assert _queued(broker, "n1") == ["t1"]
        # When the broker stops answering, a publish gives up (it is logged; the reconciler offers again)
        os.kill(broker.child.pid, signal.SIGSTOP)
        try:
            await _publish(dispatcher, _offer("n1", "t2"))
        finally:
            os.kill(broker.child.pid, signal.SIGCONT)
        assert "publishing offers to 1 nodes failed" in caplog.text
        # Then once the broker runs again the next publish gets through on a fresh connection
        await _publish(dispatcher, _offer("n1", "t3"))
        assert "t3" in _queued(broker, "n1")
    finally:
        dispatcher.close()
