from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from nodeagent.layout import NodeLayout
from nodeagent.messages import TaskReport
from nodeagent.reporter import Reporter
from nodeagent.state import Spool

from .fake_controller import FakeController


def report() -> TaskReport:
    return TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))


def test_delivered_report_leaves_the_spool(tmp_path: Path) -> None:
    controller = FakeController()
    spool = Spool(NodeLayout(tmp_path))
    Reporter(controller.client(), spool).deliver("a1", report())
    assert "a1" in controller.reports
    assert spool.pending() == []


def test_stale_report_is_dropped(tmp_path: Path) -> None:
    controller = FakeController(report_status=409)
    spool = Spool(NodeLayout(tmp_path))
    Reporter(controller.client(), spool).deliver("a1", report())
    assert spool.pending() == []


def test_report_stays_spooled_when_the_agent_stops(tmp_path: Path) -> None:
    controller = FakeController(report_status=503)
    client = controller.client()
    client.stop.set()
    spool = Spool(NodeLayout(tmp_path))
    Reporter(client, spool).deliver("a1", report())
    assert [attempt for attempt, _ in spool.pending()] == ["a1"]


def test_replay_sends_spooled_reports(tmp_path: Path) -> None:
    # Given reports spooled by an earlier agent run
    spool = Spool(NodeLayout(tmp_path))
    spool.save("a1", report())
    spool.save("a2", report())
    controller = FakeController()
    # When a new agent replays its spool
    count = Reporter(controller.client(), spool).replay()
    # Then both reach the controller and the spool is empty
    assert count == 2
    assert set(controller.reports) == {"a1", "a2"}
    assert spool.pending() == []
