from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptReport, AttemptSpec, TaskReport
from nodeagent.reporter import Reporter
from nodeagent.state import Spool
from nodeagent.testing import make_attempt_spec

from .fake_controller import FakeController


def report() -> TaskReport:
    return TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))


def item(attempt_id: str) -> AttemptReport:
    return AttemptReport(attempt_id=attempt_id, report=report())


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_delivered_reports_are_settled_without_touching_the_spool(tmp_path: Path) -> None:
    controller = FakeController()
    spool = Spool(NodeLayout(tmp_path))
    delivered: list[str] = []
    reporter = Reporter(controller.client(), spool, "n", on_delivered=delivered.append)
    reporter.deliver("a1", report())
    reporter.deliver("a2", report())
    reporter.stop()
    assert set(controller.reports) == {"a1", "a2"}
    assert sorted(delivered) == ["a1", "a2"]
    assert spool.pending() == []
    assert not (tmp_path / "volatile" / "spool").exists() or not any((tmp_path / "volatile" / "spool").iterdir())


def test_reports_waiting_together_go_in_one_call(tmp_path: Path) -> None:
    # Given a controller that is slow to answer the first call
    controller = FakeController()
    gate = threading.Event()
    handle = controller.handle
    calls: list[int] = []

    def slow(request: object) -> object:
        calls.append(1)
        gate.wait(5)
        return handle(request)  # type: ignore[arg-type]

    controller.handle = slow  # type: ignore[method-assign]
    reporter = Reporter(controller.client(), Spool(NodeLayout(tmp_path)), "n")
    # When one report is in flight and three more end meanwhile
    reporter.deliver("a1", report())
    wait_for(lambda: len(calls) == 1)
    for attempt_id in ("a2", "a3", "a4"):
        reporter.deliver(attempt_id, report())
    gate.set()
    reporter.stop()
    # Then the three travel together in the second call
    assert len(calls) == 2
    assert set(controller.reports) == {"a1", "a2", "a3", "a4"}


def test_a_refused_report_is_settled_and_not_sent_again(tmp_path: Path) -> None:
    controller = FakeController(report_status=409)
    spool = Spool(NodeLayout(tmp_path))
    delivered: list[str] = []
    answer = Reporter(controller.client(), spool, "n", on_delivered=delivered.append).send([item("a1")])
    assert answer is not None and answer.answers == {}
    assert delivered == ["a1"]
    assert spool.pending() == []


def test_unanswered_reports_are_spooled_and_sent_until_answered(tmp_path: Path) -> None:
    # Given a controller that fails twice, then answers
    controller = FakeController()
    statuses = iter([503, 503])
    spool = Spool(NodeLayout(tmp_path))
    spooled_at_each_call: list[list[str]] = []
    handle = controller.handle

    def flaky(request: object) -> object:
        spooled_at_each_call.append([attempt for attempt, _ in spool.pending()])
        controller.report_status = next(statuses, 200)
        return handle(request)  # type: ignore[arg-type]

    controller.handle = flaky  # type: ignore[method-assign]
    # When a report is sent
    answer = Reporter(controller.client(), spool, "n").send([item("a1")])
    # Then the first try wrote nothing, the retries went out from the spool, and the answer emptied it
    assert spooled_at_each_call == [[], ["a1"], ["a1"]]
    assert answer is not None and answer.answers["a1"].accepted
    assert "a1" in controller.reports
    assert spool.pending() == []


def test_report_stays_spooled_when_the_agent_stops(tmp_path: Path) -> None:
    controller = FakeController(report_status=503)
    client = controller.client()
    client.stop.set()
    spool = Spool(NodeLayout(tmp_path))
    delivered: list[str] = []
    assert Reporter(client, spool, "n", on_delivered=delivered.append).send([item("a1")]) is None
    assert [attempt for attempt, _ in spool.pending()] == ["a1"]
    assert delivered == ["a1"]


def test_the_answer_hands_over_the_next_attempts(tmp_path: Path) -> None:
    controller = FakeController()
    controller.next_specs = [make_attempt_spec(attempt_id="b1")]
    started: list[list[AttemptSpec]] = []
    reporter = Reporter(controller.client(), Spool(NodeLayout(tmp_path)), "n", on_next=started.append)
    reporter.send([item("a1")])
    assert [[spec.attempt_id for spec in specs] for specs in started] == [["b1"]]
    assert controller.refills == [True]


def test_replay_sends_spooled_reports(tmp_path: Path) -> None:
    # Given reports spooled by an earlier agent run
    spool = Spool(NodeLayout(tmp_path))
    spool.save("a1", report())
    spool.save("a2", report())
    controller = FakeController()
    reporter = Reporter(controller.client(), spool, "n")
    # When a new agent replays its spool
    count = reporter.replay()
    reporter.stop()
    # Then both reach the controller and the spool is empty
    assert count == 2
    assert set(controller.reports) == {"a1", "a2"}
    assert spool.pending() == []
