"""Small JSON files that survive an agent restart: per-attempt step state and the report spool.

Every write goes to a temporary file in the same directory and is renamed
over the target, so a crash leaves the old or the new content, never half of
it. Spooled reports are also flushed to disk before the rename; step state is
not, because after a machine crash the controller requeues the attempt and the
step state of a lost attempt is never read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nodeagent.layout import NodeLayout
from nodeagent.messages import TaskReport

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically (temporary file, fsync when `durable`, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class StepState:
    """The completed work of one attempt, keyed by stable names, so a rerun skips it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._on_disk = True
        """False while no state file is known to exist: none was found at load and none written since."""
        self._done: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        """Read the state file; an absent or unreadable file means nothing is done yet."""
        try:
            loaded = json.loads(self._path.read_bytes())
        except FileNotFoundError:
            self._on_disk = False
            return {}
        except (OSError, ValueError) as exc:
            log.warning("state file %s unreadable, starting afresh: %s", self._path, exc)
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def is_done(self, key: str) -> bool:
        """True when `key` was recorded as finished."""
        return key in self._done

    def mark_done(self, key: str, value: Any = True) -> None:
        """Record `key` as finished and persist the state."""
        self._done[key] = value
        self._on_disk = True
        write_atomic(self._path, json.dumps(self._done, sort_keys=True).encode(), durable=False)

    def remove(self) -> None:
        """Delete the state file, if there is one."""
        if not self._on_disk:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        self._on_disk = False


class Spool:
    """Reports that could not be sent at once, kept on disk until the controller answered."""

    def __init__(self, layout: NodeLayout) -> None:
        self._layout = layout

    def save(self, attempt_id: str, report: TaskReport) -> None:
        """Persist the report of `attempt_id`."""
        write_atomic(self._layout.spool_file(attempt_id), report.model_dump_json().encode())

    def remove(self, attempt_id: str) -> None:
        """Forget the report of `attempt_id`."""
        with contextlib.suppress(FileNotFoundError):
            self._layout.spool_file(attempt_id).unlink()

    def pending(self) -> list[tuple[str, TaskReport]]:
        """Every spooled (attempt id, report), oldest first; unreadable files are set aside."""
        if not self._layout.spool.is_dir():
            return []
        files = sorted(self._layout.spool.glob("*.json"), key=_mtime)
        return [item for item in (self._read(path) for path in files) if item is not None]

    def _read(self, path: Path) -> tuple[str, TaskReport] | None:
        """Load one spool file, renaming it aside when it cannot be parsed."""
        try:
            return path.stem, TaskReport.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            log.error("spool file %s is unreadable, moving it aside: %s", path, exc)
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".bad"))
            return None


def _mtime(path: Path) -> float:
    """Modification time of `path`, or 0 when it vanished meanwhile."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
