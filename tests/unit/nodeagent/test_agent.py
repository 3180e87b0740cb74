from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nodeagent.agent import AgentRuntime
from nodeagent.identity import IdentityResolver
from nodeagent.messages import PoolConfig, StartTaskSpec, TaskReport
from nodeagent.settings import AgentSettings
from nodeagent.state import Spool
from nodeagent.testing import FakeBlobStore, make_attempt_spec

from .fake_controller import SECRET, FakeController


@pytest.fixture
def controller() -> FakeController:
    return FakeController()


@pytest.fixture
def runtime(tmp_path: Path, controller: FakeController) -> Iterator[AgentRuntime]:
    settings = AgentSettings(
        node_id="node-1",
        pool_id="p",
        root_dir=tmp_path / "node",
        node_secret=SECRET,
        task_slots=3,
        heartbeat_seconds=0.05,
        kill_grace_seconds=0.5,
        advertise_host="10.0.0.5",
    )
    # Identities are not switched here: test_identity.py and test_users.py create real accounts.
    agent = AgentRuntime(settings, client=controller.client(), blob=FakeBlobStore(), identities=IdentityResolver())
    yield agent
    agent.stop()


def dispatch(attempt_id: str, node_id: str = "node-1") -> dict[str, object]:
    return {"node_id": node_id, "offers": [{"attempt_id": attempt_id, "job_id": "job-1", "task_id": "task-1"}]}


def run_to_report(runtime: AgentRuntime, controller: FakeController, attempt_id: str) -> dict[str, object]:
    """Dispatch one attempt and wait until its report reached the controller and it left the running list."""
    assert runtime.handle_dispatch(dispatch(attempt_id)) == [attempt_id]
    _wait_for(lambda: attempt_id in controller.reports and attempt_id not in runtime.running.ids())
    return controller.reports[attempt_id]


def test_start_registers_the_node_with_a_first_heartbeat(runtime: AgentRuntime, controller: FakeController) -> None:
    runtime.start()
    first = controller.heartbeats[0]
    assert (first["node_id"], first["pool_id"], first["task_slots"]) == ("node-1", "p", 3)
    assert first["file_server_url"] == f"http://10.0.0.5:{runtime.files.port}"
    assert first["ip_address"] == "10.0.0.5"
    assert (runtime.layout.root / "volatile" / "spool").is_dir()


def test_dispatch_for_another_node_is_dropped(runtime: AgentRuntime, controller: FakeController) -> None:
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1")
    assert runtime.handle_dispatch(dispatch("a1", node_id="node-2")) == []
    assert controller.reports == {}


def test_invalid_dispatch_is_dropped(runtime: AgentRuntime) -> None:
    assert runtime.handle_dispatch({"attempt_id": "a1"}) == []


def test_refused_claim_is_dropped(runtime: AgentRuntime, controller: FakeController) -> None:
    assert runtime.handle_dispatch(dispatch("unknown")) == []
    assert controller.reports == {}
    assert runtime.running.ids() == []


def test_claimed_attempt_runs_and_is_reported(runtime: AgentRuntime, controller: FakeController) -> None:
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/echo hi")
    report = run_to_report(runtime, controller, "a1")
    assert (report["outcome"], report["exit_code"]) == ("exited", 0)
    stdout = runtime.layout.task_dirs("job-1", "task-1").stdout
    assert stdout.read_text() == "hi\n"
    assert runtime.running.ids() == []


def test_running_attempt_is_listed_and_killed_when_stale(runtime: AgentRuntime, controller: FakeController) -> None:
    # Given a long attempt running on the node
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/sleep 60")
    assert runtime.handle_dispatch(dispatch("a1")) == ["a1"]
    runtime.start()
    _wait_for(lambda: any(beat["running_attempts"] == ["a1"] for beat in controller.heartbeats))
    # When the controller says it is stale
    controller.stale = ["a1"]
    # Then it is stopped and not reported
    _wait_for(lambda: runtime.running.ids() == [], timeout=10)
    assert controller.reports == {}


def test_stop_kills_running_attempts_without_reporting(runtime: AgentRuntime, controller: FakeController) -> None:
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/sleep 60")
    assert runtime.handle_dispatch(dispatch("a1")) == ["a1"]
    _wait_for(lambda: runtime.running.handle("a1") is not None and runtime.running.handle("a1").pgid is not None)  # type: ignore[union-attr]
    runtime.stop()
    assert runtime.running.ids() == []
    assert controller.reports == {}


def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_a_report_answer_starts_the_next_attempts_at_once(runtime: AgentRuntime, controller: FakeController) -> None:
    # Given a controller that answers a report with the next attempt claimed for the node
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", command_line="/bin/true")
    controller.next_specs = [make_attempt_spec(attempt_id="a2", task_id="task-2", command_line="/bin/echo next")]
    # When the first attempt ends and is reported
    run_to_report(runtime, controller, "a1")
    # Then the second runs without any dispatch, and is reported in turn
    _wait_for(lambda: "a2" in controller.reports and runtime.running.ids() == [])
    assert runtime.layout.task_dirs("job-1", "task-2").stdout.read_text() == "next\n"
    assert controller.refills[0] is True


def test_a_stopping_agent_asks_for_no_more_attempts(runtime: AgentRuntime, controller: FakeController) -> None:
    runtime.request_stop()
    runtime.reporter.deliver("a1", TaskReport(node_id="node-1", outcome="exited", end_time=datetime.now(UTC)))
    _wait_for(lambda: "a1" in controller.reports)
    assert controller.refills == [False]


def test_start_replays_reports_spooled_by_an_earlier_run(runtime: AgentRuntime, controller: FakeController) -> None:
    # Given a report left in the spool by a previous agent process
    Spool(runtime.layout).save(
        "old", TaskReport(node_id="node-1", outcome="exited", exit_code=0, end_time=datetime.now(UTC))
    )
    # When the agent starts
    runtime.start()
    # Then the report reaches the controller and leaves the spool
    _wait_for(lambda: "old" in controller.reports)
    _wait_for(lambda: Spool(runtime.layout).pending() == [])


def test_a_node_without_pool_config_keeps_beating_as_starting(
    runtime: AgentRuntime, controller: FakeController
) -> None:
    runtime.start()
    _wait_for(lambda: len(controller.heartbeats) >= 3)
    assert {beat["readiness"] for beat in controller.heartbeats} == {"starting"}
    assert controller.heartbeats[-1]["pool_config_version"] == ""


def test_the_pool_config_is_applied_and_reported(runtime: AgentRuntime, controller: FakeController) -> None:
    # Given a controller with a pool config holding a start task
    controller.pool_config = PoolConfig(
        pool_id="p",
        version="cfg-7",
        account_name="a",
        account_url="http://a",
        start_task=StartTaskSpec(command_line="/bin/echo started"),
    )
    controller.lease_seconds = 45.0
    # When the agent runs
    runtime.start()
    # Then it reports the config applied, the start task done and the node ready
    _wait_for(lambda: controller.heartbeats[-1]["readiness"] == "ready")
    last = controller.heartbeats[-1]
    assert last["pool_config_version"] == "cfg-7"
    start_task = last["start_task"]
    assert isinstance(start_task, dict) and start_task["result"] == "success"
    assert (runtime.layout.startup / "stdout.txt").read_text() == "started\n"
    assert runtime.lease_seconds == 45.0


def test_a_finished_attempt_is_kept_for_retention_and_a_rerun_cancels_it(
    runtime: AgentRuntime, controller: FakeController
) -> None:
    # Given a finished attempt kept for an hour
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", retention_seconds=3600)
    run_to_report(runtime, controller, "a1")
    task_dir = runtime.layout.task_dirs("job-1", "task-1").task_dir
    _wait_for(lambda: len(runtime.retention.pending()) == 1)
    assert [entry.task_dir for entry in runtime.retention.pending()] == [str(task_dir)]
    # When the task runs again, its directory is recorded again with the new deadline only
    controller.specs["a2"] = make_attempt_spec(attempt_id="a2", node_id="node-1", retention_seconds=0)
    run_to_report(runtime, controller, "a2")
    _wait_for(lambda: runtime.retention.pending()[0].deadline <= time.time())
    pending = runtime.retention.pending()
    assert len(pending) == 1 and pending[0].deadline <= time.time()
    # And the sweeper deletes it
    assert runtime.retention.sweep() == 1
    assert not task_dir.exists()
