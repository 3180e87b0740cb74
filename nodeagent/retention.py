"""Task directories kept for their retention time, then deleted with their task-scope user.

When an attempt ends, its task directory is recorded with a deadline (its
`retentionTime`, seven days by default) and the per-task account to remove, in
`<root>/volatile/retention.json`, written atomically so the list survives a
restart. A background thread deletes what is due: the task directory, the job
directories above it once empty, then the account. When an attempt of the same
task starts on the node first, its pending deletion is cancelled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from nodeagent.layout import NodeLayout, is_inside
from nodeagent.state import write_atomic

log = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
"""Azure's default retentionTime: seven days."""


JOURNAL_COMPACT_LINES = 1000
"""Journal lines after which the whole index is rewritten."""


@dataclass(frozen=True)
class Pending:
    """A task directory to delete at `deadline` (epoch seconds), with the per-task account to remove after it."""

    task_dir: str
    deadline: float
    user: str | None = None


class Retention:
    """The persistent list of task directories waiting for deletion, and the thread that deletes them."""

    def __init__(
        self,
        layout: NodeLayout,
        remove_user: Callable[[str], bool],
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._layout = layout
        self._remove_user = remove_user
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: dict[str, Pending] = self._load()
        self._journaled = 0
        self._journal_fd: int | None = None

    def schedule(self, task_dir: Path, retention_seconds: float | None, user: str | None) -> None:
        """Delete `task_dir` (and remove `user`) once `retention_seconds` (default seven days) have passed."""
        seconds = DEFAULT_RETENTION_SECONDS if retention_seconds is None else max(retention_seconds, 0.0)
        entry = Pending(task_dir=str(task_dir), deadline=self._clock() + seconds, user=user)
        with self._lock:
            self._pending[entry.task_dir] = entry
            self._journal({"add": asdict(entry)})
        log.debug("task directory %s kept for %.0fs", task_dir, seconds)

    def cancel(self, task_dir: Path) -> None:
        """Keep `task_dir`: an attempt of its task starts (waits while a deletion of it is under way)."""
        with self._lock:
            if self._pending.pop(str(task_dir), None) is not None:
                self._journal({"cancel": str(task_dir)})
                log.info("task directory %s: pending deletion cancelled, the task runs again", task_dir)

    def pending(self) -> list[Pending]:
        """The recorded entries, earliest deadline first."""
        with self._lock:
            return sorted(self._pending.values(), key=lambda entry: entry.deadline)

    def sweep(self) -> int:
        """Delete every due entry; how many were finished."""
        now = self._clock()
        finished = 0
        for entry in self.pending():
            if entry.deadline > now:
                break
            with self._lock:
                if self._pending.get(entry.task_dir) != entry:
                    continue
                if self._delete(entry):
                    del self._pending[entry.task_dir]
                    finished += 1
                self._save()
        return finished

    def start(self) -> None:
        """Start the sweeping thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the sweeping thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._lock:
            self._close_journal()

    def _loop(self) -> None:
        """Sweep every interval until stopped; an unexpected error is logged and the loop goes on."""
        while not self._stop.wait(self._interval):
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed")

    def _delete(self, entry: Pending) -> bool:
        """Delete the directory, its empty job directories and its account; False when something must be retried."""
        task_dir = Path(entry.task_dir)
        if not is_inside(task_dir, self._layout.workitems) or task_dir == self._layout.workitems:
            log.error("retention entry %s is outside the work items directory; dropped", task_dir)
            return True
        if task_dir.exists() and not self._remove_tree(task_dir):
            return False
        self._remove_empty_parents(task_dir.parent)
        log.info("task directory %s deleted after its retention time", task_dir)
        return entry.user is None or self._remove_user(entry.user)

    def _remove_tree(self, task_dir: Path) -> bool:
        """rmtree without following links; False when something could not be deleted."""
        try:
            shutil.rmtree(task_dir)
        except OSError as exc:
            log.warning("task directory %s: deletion failed, retried later: %s", task_dir, exc)
            return False
        return True

    def _remove_empty_parents(self, directory: Path) -> None:
        """Remove `directory` and its parents up to (not including) workitems/ while they are empty."""
        workitems = self._layout.workitems
        while directory != workitems and directory.is_relative_to(workitems):
            with contextlib.suppress(OSError):
                directory.rmdir()
            if directory.exists():
                return
            directory = directory.parent

    def _journal_path(self) -> Path:
        return self._layout.retention_index.with_suffix(".journal")

    def _load(self) -> dict[str, Pending]:
        """Read the index, then replay its journal; an absent or unreadable index means nothing is pending."""
        path = self._layout.retention_index
        pending: dict[str, Pending] = {}
        try:
            pending = {
                entry.task_dir: entry for entry in (Pending(**record) for record in json.loads(path.read_bytes()))
            }
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.error("retention index %s unreadable, starting empty: %s", path, exc)
        self._replay(pending)
        return pending

    def _replay(self, pending: dict[str, Pending]) -> None:
        """Apply the journal's additions and cancellations written since the index was last saved."""
        try:
            lines = self._journal_path().read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                change = json.loads(line)
                if "add" in change:
                    entry = Pending(**change["add"])
                    pending[entry.task_dir] = entry
                else:
                    pending.pop(change["cancel"], None)
            except (ValueError, TypeError, KeyError):
                log.warning("retention journal: skipped an unreadable line")

    def _journal(self, change: dict[str, object]) -> None:
        """Append one change (called with the lock held): O(1) per attempt, however many directories are kept.

        The whole index is rewritten only when the journal has grown long, or by a sweep that deleted something.
        """
        line = (json.dumps(change, sort_keys=True) + "\n").encode()
        if self._journal_fd is None:
            self._journal_fd = self._open_journal()
        os.write(self._journal_fd, line)
        self._journaled += 1
        if self._journaled >= JOURNAL_COMPACT_LINES:
            self._save()

    def _save(self) -> None:
        """Write the index atomically and empty the journal (called with the lock held)."""
        records = [asdict(entry) for entry in self._pending.values()]
        write_atomic(self._layout.retention_index, json.dumps(records, sort_keys=True).encode())
        self._close_journal()
        self._journal_path().unlink(missing_ok=True)
        self._journaled = 0

    def _open_journal(self) -> int:
        """The journal opened for appending (created, with its directory, when absent); kept open until saved."""
        path = self._journal_path()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(path, flags, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(path, flags, 0o644)

    def _close_journal(self) -> None:
        """Close the journal's descriptor, if open (called with the lock held)."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None
