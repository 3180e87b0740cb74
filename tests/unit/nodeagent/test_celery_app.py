from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.agent import AgentRuntime
from nodeagent.celery_app import celery_config, create_app, worker_argv
from nodeagent.identity import IdentityResolver
from nodeagent.messages import RUN_ATTEMPT_TASK, node_queue
from nodeagent.settings import AgentSettings
from nodeagent.testing import FakeBlobStore

from .fake_controller import SECRET, FakeController


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        node_id="node-1",
        root_dir=tmp_path,
        node_secret=SECRET,
        task_slots=6,
        broker_url="redis://127.0.0.1:1/0",
        broker_key_prefix="dep:",
    )


@pytest.fixture
def runtime(settings: AgentSettings) -> Iterator[AgentRuntime]:
    # Identities are not switched here: test_identity.py and test_users.py create real accounts.
    agent = AgentRuntime(
        settings, client=FakeController().client(), blob=FakeBlobStore(), identities=IdentityResolver()
    )
    yield agent
    agent.stop()


def test_config_acks_on_receipt_json_only_one_prefetch(settings: AgentSettings) -> None:
    config = celery_config(settings)
    assert config["task_acks_late"] is False
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["worker_prefetch_multiplier"] == 1
    assert config["worker_concurrency"] == 6 and config["worker_pool"] == "threads"
    assert config["result_backend"] is None and config["task_ignore_result"] is True
    assert config["worker_enable_remote_control"] is False
    assert config["broker_connection_retry_on_startup"] is True


def test_transport_options(settings: AgentSettings) -> None:
    options = celery_config(settings)["broker_transport_options"]
    assert options == {
        "visibility_timeout": 600,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "global_keyprefix": "dep:",
    }


def test_worker_consumes_only_its_node_queue(settings: AgentSettings) -> None:
    argv = worker_argv(settings)
    assert argv[argv.index("-Q") + 1] == node_queue("node-1")
    assert argv[argv.index("-n") + 1] == "node-1@%h"
    assert {"--without-gossip", "--without-mingle", "--without-heartbeat", "--pool=threads", "--concurrency=6"} <= set(
        argv
    )


def test_task_is_registered_by_name_and_runs_the_dispatch(settings: AgentSettings, runtime: AgentRuntime) -> None:
    # Given the app and a controller that knows no attempt
    app = create_app(settings, runtime)
    task = app.tasks[RUN_ATTEMPT_TASK]
    # When the task is called with a dispatch for another node
    result = task(dispatch={"node_id": "other", "offers": [{"attempt_id": "a", "job_id": "j", "task_id": "t"}]})
    # Then it is dropped quietly
    assert result == []
