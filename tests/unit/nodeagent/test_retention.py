from __future__ import annotations

from pathlib import Path

from nodeagent.identity import IdentityResolver, UserNames
from nodeagent.layout import NodeLayout
from nodeagent.retention import DEFAULT_RETENTION_SECONDS, JOURNAL_COMPACT_LINES, Retention
from nodeagent.testing import make_attempt_spec
from nodeagent.users import Accounts, lookup


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def task_dir(layout: NodeLayout, job: str = "job", task: str = "task") -> Path:
    dirs = layout.task_dirs(job, task)
    dirs.wd.mkdir(parents=True)
    (dirs.wd / "out.txt").write_text("x")
    return dirs.task_dir


def retention(layout: NodeLayout, clock: Clock, removed: list[str] | None = None) -> Retention:
    def remove(name: str) -> bool:
        if removed is not None:
            removed.append(name)
        return True

    return Retention(layout, remove, clock=clock)


def test_a_directory_is_kept_until_its_retention_time_passes(tmp_path: Path) -> None:
    # Given a finished task kept for 60 seconds
    layout, clock = NodeLayout(tmp_path), Clock()
    layout.create()
    directory = task_dir(layout)
    keeper = retention(layout, clock)
    keeper.schedule(directory, 60, None)
    # When the sweeper runs before and after the deadline
    clock.now += 59
    assert keeper.sweep() == 0 and directory.exists()
    clock.now += 2
    assert keeper.sweep() == 1
    # Then the directory and its now empty job directories are gone
    assert not directory.exists()
    assert not (layout.workitems / "job").exists()
    assert layout.workitems.is_dir()
    assert keeper.pending() == []


def test_the_default_retention_is_seven_days(tmp_path: Path) -> None:
    layout, clock = NodeLayout(tmp_path), Clock()
    keeper = retention(layout, clock)
    keeper.schedule(task_dir(layout), None, None)
    assert keeper.pending()[0].deadline == clock.now + DEFAULT_RETENTION_SECONDS == clock.now + 7 * 24 * 3600


def test_a_job_directory_with_other_tasks_stays(tmp_path: Path) -> None:
    layout, clock = NodeLayout(tmp_path), Clock()
    first, second = task_dir(layout, task="a"), task_dir(layout, task="b")
    keeper = retention(layout, clock)
    keeper.schedule(first, 0, None)
    keeper.sweep()
    assert not first.exists() and second.exists()


def test_pending_deletions_survive_a_restart(tmp_path: Path) -> None:
    layout, clock = NodeLayout(tmp_path), Clock()
    layout.create()
    directory = task_dir(layout)
    retention(layout, clock).schedule(directory, 10, "byt-abc")
    # A new instance (the agent restarted) reads the index
    removed: list[str] = []
    restarted = retention(layout, clock, removed)
    clock.now += 11
    assert restarted.sweep() == 1
    assert not directory.exists() and removed == ["byt-abc"]


def test_a_rerun_of_the_task_cancels_the_deletion(tmp_path: Path) -> None:
    # Given a directory due for deletion
    layout, clock = NodeLayout(tmp_path), Clock()
    directory = task_dir(layout)
    keeper = retention(layout, clock)
    keeper.schedule(directory, 0, None)
    # When an attempt of the same task starts first
    keeper.cancel(directory)
    # Then the sweeper leaves it alone
    assert keeper.sweep() == 0 and directory.exists()
    assert retention(layout, clock).pending() == []


def test_a_failed_account_removal_is_retried(tmp_path: Path) -> None:
    layout, clock = NodeLayout(tmp_path), Clock()
    directory = task_dir(layout)
    attempts: list[str] = []

    def remove(name: str) -> bool:
        attempts.append(name)
        return len(attempts) > 1

    keeper = Retention(layout, remove, clock=clock)
    keeper.schedule(directory, 0, "byt-x")
    assert keeper.sweep() == 0 and not directory.exists()
    assert keeper.sweep() == 1
    assert attempts == ["byt-x", "byt-x"]


def test_an_entry_outside_the_work_items_is_dropped_untouched(tmp_path: Path) -> None:
    layout, clock = NodeLayout(tmp_path / "node"), Clock()
    outside = tmp_path / "precious"
    outside.mkdir()
    keeper = retention(layout, clock)
    keeper.schedule(outside, 0, None)
    assert keeper.sweep() == 1
    assert outside.is_dir()


def test_an_unreadable_index_starts_empty(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    layout.create()
    layout.retention_index.write_text("{not json")
    assert retention(layout, Clock()).pending() == []


def test_the_task_account_is_removed_with_its_directory(node_root: Path, user_prefix: str) -> None:
    # Given a task-scope account that ran a task
    layout, clock = NodeLayout(node_root), Clock()
    layout.create()
    identities = IdentityResolver(Accounts(), UserNames(user_prefix))
    spec = make_attempt_spec(user_identity={"auto_user_scope": "task"})
    directory = task_dir(layout, spec.job_id, spec.task_id)
    identities.for_attempt(spec, directory)
    name = identities.task_user(spec)
    assert name is not None and lookup(name) is not None
    # When its retention time is over
    keeper = Retention(layout, identities.remove_task_user, clock=clock)
    keeper.schedule(directory, 0, name)
    keeper.sweep()
    # Then the account is gone too
    assert lookup(name) is None and not directory.exists()


def test_a_long_journal_is_folded_into_the_index_and_nothing_is_lost(tmp_path: Path) -> None:
    # Given more scheduled directories than the journal holds before it is compacted
    layout, clock = NodeLayout(tmp_path), Clock()
    keeper = retention(layout, clock)
    count = JOURNAL_COMPACT_LINES + 5
    for index in range(count):
        keeper.schedule(layout.task_dirs("job", f"t{index}").task_dir, 10, None)
    # Then the index holds what was compacted, the journal only the rest, and a restart sees them all
    journal_lines = layout.retention_index.with_suffix(".journal").read_text().splitlines()
    assert layout.retention_index.exists() and len(journal_lines) == 5
    assert len(retention(layout, clock).pending()) == count
