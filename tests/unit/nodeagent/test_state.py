from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from nodeagent.layout import NodeLayout
from nodeagent.messages import TaskReport
from nodeagent.state import Spool, StepState, write_atomic


def report(exit_code: int = 0) -> TaskReport:
    return TaskReport(node_id="n", outcome="exited", exit_code=exit_code, end_time=datetime(2026, 1, 1, tzinfo=UTC))


def test_write_atomic_replaces_content_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "file.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.json"]


def test_step_state_persists_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StepState(path).mark_done("download:abc", ["/x"])
    again = StepState(path)
    assert again.is_done("download:abc")
    assert not again.is_done("download:other")


def test_unreadable_step_state_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    assert not StepState(path).is_done("anything")


def test_step_state_remove_deletes_whichever_state_file_there_is(tmp_path: Path) -> None:
    # A file written by this attempt, one left by an earlier agent, and an unreadable one all go
    written, earlier, unreadable = (tmp_path / f"{name}.json" for name in ("written", "earlier", "unreadable"))
    state = StepState(written)
    state.mark_done("step")
    StepState(earlier).mark_done("step")
    unreadable.write_text("{not json")
    for removed in (state, StepState(earlier), StepState(unreadable)):
        removed.remove()
    assert list(tmp_path.iterdir()) == []
    # And removing when there never was a file is fine
    StepState(tmp_path / "never.json").remove()


def test_spool_save_and_pending(tmp_path: Path) -> None:
    # Given two spooled reports
    spool = Spool(NodeLayout(tmp_path))
    spool.save("a1", report(0))
    spool.save("a2", report(3))
    # When the spool is read back (as on an agent restart)
    pending = dict(spool.pending())
    # Then both come back intact, from <root>/volatile/spool/<attempt>.json
    assert pending == {"a1": report(0), "a2": report(3)}
    assert (tmp_path / "volatile" / "spool" / "a1.json").is_file()


def test_spool_remove(tmp_path: Path) -> None:
    spool = Spool(NodeLayout(tmp_path))
    spool.save("a1", report())
    spool.remove("a1")
    spool.remove("a1")
    assert spool.pending() == []


def test_corrupt_spool_file_is_set_aside(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    layout.spool.mkdir(parents=True)
    (layout.spool / "bad.json").write_text("garbage")
    assert Spool(layout).pending() == []
    assert (layout.spool / "bad.bad").exists()
