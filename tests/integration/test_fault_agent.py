"""The agent's own defences, with real processes: self-fencing, the launcher that outlives a killed agent,
node commands, and the controller client's bounded heartbeats and early retries."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from nodeagent import cgroups
from nodeagent.__main__ import restart_argv
from nodeagent.agent import AgentRuntime
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.errors import ControllerUnavailable, ProcessLost
from nodeagent.fencing import Fence, fence_window
from nodeagent.identity import IdentityResolver
from nodeagent.launcher import Launcher
from nodeagent.messages import AttemptReport, HeartbeatAnswer, NodeHeartbeat, ReportBatch, TaskReport
from nodeagent.process import ProcessSpec
from nodeagent.running import RunningAttempts
from nodeagent.settings import AgentSettings
from nodeagent.testing import FakeBlobStore, make_attempt_spec
from nodeagent.transport import Answer, Call
from nodeagent.users import host_lock
from tests.unit.nodeagent.fake_controller import SECRET, FakeController


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """`sleep 60` with a child of its own, in a new session, as attempts run; killed afterwards."""
    child = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    wait_until(lambda: len(psutil.Process(child.pid).children()) == 2)
    yield child
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


# --- the fencing window -------------------------------------------------------------------------------


def test_the_window_is_the_lease_minus_two_heartbeats_and_never_below_half_the_lease() -> None:
    assert fence_window(30.0, 2.0) == 26.0
    assert fence_window(8.0, 1.0) == 6.0
    assert fence_window(3.0, 1.0) == 1.5


def test_fence_fires_only_after_the_window_and_is_reset_by_an_answer() -> None:
    now = [100.0]
    calls: list[int] = []
    fence = Fence(lambda: calls.append(1) or ["a1"], heartbeat_seconds=1.0, default_seconds=5.0, clock=lambda: now[0])
    now[0] += 4.9
    assert fence.check() == [] and calls == []
    now[0] += 0.2
    assert fence.check() == ["a1"]
    fence.heard(lease_seconds=8.0)
    assert fence.window == 6.0
    now[0] += 5.9
    assert fence.check() == []


def test_fencing_kills_the_whole_group_once_and_spares_ended_attempts(sleeper: subprocess.Popen[bytes]) -> None:
    running = RunningAttempts()
    handle = running.add("a1")
    ended = running.add("a2")
    assert handle is not None and ended is not None
    running.set_process("a1", sleeper.pid)
    finished = subprocess.Popen(["/bin/true"], start_new_session=True)
    finished.wait()
    running.set_process("a2", finished.pid)
    children = psutil.Process(sleeper.pid).children()
    assert running.fence() == ["a1"]
    assert handle.cancel.is_set() and not ended.cancel.is_set()
    sleeper.wait(timeout=5)
    wait_until(lambda: not any(alive(child.pid) for child in children))
    assert running.fence() == []


def fence_settings(root: Path) -> AgentSettings:
    """Settings of an agent whose heartbeats go unanswered after the first."""
    return AgentSettings(
        node_id="node-1",
        pool_id="p",
        root_dir=root,
        node_secret=SECRET,
        heartbeat_seconds=0.1,
        kill_grace_seconds=5.0,
    )


def test_an_agent_that_cannot_renew_kills_its_attempt_and_does_not_report_it(tmp_path: Path) -> None:
    controller = FakeController()
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/sleep 60")
    agent = AgentRuntime(
        fence_settings(tmp_path / "node"),
        client=controller.client(),
        blob=FakeBlobStore(),
        identities=IdentityResolver(),
    )
    try:
        agent.on_heartbeat_answer(HeartbeatAnswer(lease_seconds=1.0))
        started = time.monotonic()
        assert agent.handle_dispatch(dispatch("a1")) == ["a1"]
        agent.fence.start()
        wait_until(lambda: agent.running.ids() == [])
        # The window is 0.8 s after the last answer; the 5 s kill grace is not waited for.
        assert time.monotonic() - started < 3.0
        assert controller.reports == {}
    finally:
        agent.stop()


def dispatch(attempt_id: str) -> dict[str, object]:
    return {"node_id": "node-1", "offers": [{"attempt_id": attempt_id, "job_id": "job-1", "task_id": "task-1"}]}


# --- the launcher -------------------------------------------------------------------------------------


def tree_spec(tmp_path: Path) -> ProcessSpec:
    """`sleep 60` with a child of its own, as attempts run; its pid written to stdout."""
    return ProcessSpec(
        argv=("/bin/sh", "-c", "echo $$; sleep 60 & sleep 60"),
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
    )


def run_in_thread(launcher: Launcher, spec: ProcessSpec) -> tuple[threading.Thread, list[BaseException]]:
    """Run `spec` through `launcher` on a thread of its own; what it raised lands in the list."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            launcher.run(spec)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, raised


def started_tree(out: Path) -> list[int]:
    """The pids of the tree `tree_spec` started, once all three run."""
    wait_until(lambda: out.exists() and out.read_text().strip().isdigit())
    leader = int(out.read_text())
    wait_until(lambda: len(psutil.Process(leader).children()) == 2)
    return [leader, *(child.pid for child in psutil.Process(leader).children())]


def test_closing_the_launcher_kills_the_commands_it_runs(tmp_path: Path) -> None:
    launcher = Launcher()
    thread, raised = run_in_thread(launcher, tree_spec(tmp_path))
    tree = started_tree(tmp_path / "out")
    launcher.close()
    thread.join(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in tree), timeout=5)
    assert [type(exc) for exc in raised] == [ProcessLost]


def test_a_killed_launcher_costs_its_commands_and_the_next_start_gets_a_new_one(tmp_path: Path) -> None:
    # Given a command running through the launcher
    launcher = Launcher()
    try:
        thread, raised = run_in_thread(launcher, tree_spec(tmp_path))
        tree = started_tree(tmp_path / "out")
        first = launcher.pid
        assert first is not None
        # When the launcher is killed
        os.kill(first, signal.SIGKILL)
        thread.join(timeout=10)
        # Then the command's end is lost, its tree is killed, and a new launcher starts the next command
        assert [type(exc) for exc in raised] == [ProcessLost]
        wait_until(lambda: not any(alive(pid) for pid in tree), timeout=5)
        spec = replace(tree_spec(tmp_path), argv=("/bin/sh", "-c", "exit 4"))
        assert launcher.run(spec).exit_code == 4
        assert launcher.pid not in (None, first)
    finally:
        launcher.close()


def test_a_launcher_lost_while_starting_a_command_is_not_asked_again(tmp_path: Path) -> None:
    # Given a launcher that takes a start request and dies without answering
    received = tmp_path / "received"
    dies = f"import sys; line = sys.stdin.readline(); open({str(received)!r}, 'a').write(line)"
    launcher = Launcher([sys.executable, "-c", dies])
    try:
        # When a command is started through it
        with pytest.raises(ProcessLost):
            launcher.start(tree_spec(tmp_path))
    finally:
        launcher.close()
    # Then the start is given up: it may have run, so no other launcher is asked to start it again
    assert len(received.read_text().splitlines()) == 1


AGENT_STAND_IN = """
import sys, threading
from pathlib import Path
from nodeagent.launcher import Launcher
from nodeagent.process import ProcessSpec
out = Path(sys.argv[1])
spec = ProcessSpec(argv=("/bin/sh", "-c", "echo $$; sleep 60 & sleep 60"), cwd=out.parent,
                   env={"PATH": "/usr/bin:/bin"}, stdout_path=out, stderr_path=out.parent / "err")
Launcher().run(spec)
"""


def test_the_launcher_kills_the_commands_of_an_agent_killed_with_sigkill(tmp_path: Path) -> None:
    stand_in = subprocess.Popen([sys.executable, "-c", AGENT_STAND_IN, str(tmp_path / "out")])
    tree = started_tree(tmp_path / "out")
    try:
        stand_in.kill()
        stand_in.wait()
        wait_until(lambda: not any(alive(pid) for pid in tree), timeout=5)
    finally:
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# --- node commands ------------------------------------------------------------------------------------


def test_a_command_stops_every_attempt_and_the_worker_once(tmp_path: Path) -> None:
    controller = FakeController()
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/sleep 60")
    shutdowns: list[int] = []
    agent = AgentRuntime(
        fence_settings(tmp_path / "node"),
        client=controller.client(),
        blob=FakeBlobStore(),
        identities=IdentityResolver(),
        shutdown_worker=lambda: shutdowns.append(1),
    )
    try:
        assert agent.handle_dispatch(dispatch("a1")) == ["a1"]
        agent.on_heartbeat_answer(HeartbeatAnswer(command="reboot"))
        agent.on_heartbeat_answer(HeartbeatAnswer(command="leave"))
        wait_until(lambda: agent.running.ids() == [])
        assert (agent.exit_action, shutdowns, controller.reports) == ("reboot", [1], {})
    finally:
        agent.stop()


def test_a_reboot_runs_the_agent_again_with_its_own_arguments() -> None:
    assert restart_argv(["--pool", "p1", "--slots", "2"]) == [sys.executable, "-m", "nodeagent", "--pool", "p1",
                                                               "--slots", "2"]  # fmt: skip


# --- the controller client ----------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_a_hung_heartbeat_gives_up_after_its_own_timeout(silent_port: int) -> None:
    client = ControllerClient(f"http://127.0.0.1:{silent_port}", SECRET, heartbeat_timeout=0.5)
    beat = NodeHeartbeat(node_id="n1", pool_id="p", task_slots=1, file_server_url="http://h:1")
    started = time.monotonic()
    with pytest.raises(ControllerUnavailable):
        client.heartbeat(beat)
    assert time.monotonic() - started < 3.0
    client.close()


def test_pending_reports_are_retried_at_once_when_the_controller_answers_again() -> None:
    answers = iter([503, 200])

    def handle(call: Call) -> Answer:
        return Answer(next(answers), json.dumps({"answers": {"a1": {"accepted": True}}}).encode())

    client = ControllerClient(
        "http://controller",
        SECRET,
        transport=handle,
        report_retry=RetryPolicy(attempts=None, first_delay=60.0),
    )
    report = TaskReport(node_id="n1", outcome="exited", exit_code=0, end_time="2026-01-01T00:00:00Z")
    batch = ReportBatch(reports=[AttemptReport(attempt_id="a1", report=report)])
    result: list[object] = []
    sender = threading.Thread(target=lambda: result.append(client.deliver_reports("n1", batch)))
    started = time.monotonic()
    sender.start()
    time.sleep(0.3)
    client.wake_retries()
    sender.join(timeout=5)
    assert not sender.is_alive() and time.monotonic() - started < 5
    assert result and result[0] is not None
    client.close()


# --- accounts of several agents on one host -----------------------------------------------------------


def test_the_host_account_lock_excludes_other_holders(tmp_path: Path) -> None:
    path = tmp_path / "accounts.lock"
    order: list[str] = []

    def second() -> None:
        with host_lock(path):
            order.append("second")

    with host_lock(path):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.2)
        order.append("first")
    waiter.join(timeout=5)
    assert order == ["first", "second"]
    with host_lock(None):
        order.append("unlocked")


def test_a_fenced_agent_claims_nothing(tmp_path: Path) -> None:
    controller = FakeController()
    controller.specs["a1"] = make_attempt_spec(attempt_id="a1", node_id="node-1", command_line="/bin/true")
    settings = fence_settings(tmp_path / "node")
    agent = AgentRuntime(settings, client=controller.client(), blob=FakeBlobStore(), identities=IdentityResolver())
    try:
        agent.on_heartbeat_answer(HeartbeatAnswer(lease_seconds=0.5))
        time.sleep(0.5)
        assert agent.handle_dispatch(dispatch("a1")) == []
        assert controller.reports == {}
        agent.on_heartbeat_answer(HeartbeatAnswer(lease_seconds=30.0))
        assert agent.handle_dispatch(dispatch("a1")) == ["a1"]
        wait_until(lambda: "a1" in controller.reports)
    finally:
        agent.stop()


def test_agents_with_one_node_id_on_one_host_get_their_own_cgroups(tmp_path: Path) -> None:
    first, second = (cgroups.node_group_name("local-1", tmp_path / name) for name in ("a", "b"))
    assert first != second and first.startswith("local-1-")
    assert cgroups.node_group_name("local-1", tmp_path / "a") == first
