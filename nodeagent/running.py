"""The attempts this node is running now, and how to take one away (gently, or at once when fencing)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from nodeagent import process

log = logging.getLogger(__name__)


@dataclass
class AttemptHandle:
    """One running attempt: its cancel flag and, once started, its process group."""

    attempt_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    pgid: int | None = None
    fenced: bool = False


def group_alive(pgid: int) -> bool:
    """True while process group `pgid` has a member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ClaimOrder:
    """Keeps heartbeats and claims apart, so that a heartbeat lists every attempt claimed before it is read.

    Claims may overlap one another. A heartbeat waits (up to its patience) until none is unanswered,
    and no claim starts from its building to its answer; a heartbeat that stopped waiting says that a
    claim was unanswered, and the controller then confirms no stop from its list.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._claims = 0
        self._beating = False

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Around a call that may claim attempts and the registering of what it claimed."""
        with self._changed:
            self._changed.wait_for(lambda: not self._beating)
            self._claims += 1
        try:
            yield
        finally:
            with self._changed:
                self._claims -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def heartbeat(self, patience: float) -> Iterator[bool]:
        """Around building and sending a heartbeat; yields True when a claim was still unanswered."""
        with self._changed:
            self._changed.wait_for(lambda: self._claims == 0 and not self._beating, timeout=patience)
            in_flight = self._claims > 0
            self._beating = True
        try:
            yield in_flight
        finally:
            with self._changed:
                self._beating = False
                self._changed.notify_all()


class RunningAttempts:
    """Thread-safe registry of the attempts between their claim and their end (their report delivered)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._handles: dict[str, AttemptHandle] = {}
        self.order = ClaimOrder()

    def add(self, attempt_id: str) -> AttemptHandle | None:
        """Register an attempt; None when it is already running here."""
        with self._lock:
            if attempt_id in self._handles:
                return None
            handle = AttemptHandle(attempt_id)
            self._handles[attempt_id] = handle
            return handle

    def handle(self, attempt_id: str) -> AttemptHandle | None:
        """The registered attempt's handle, if it is registered."""
        with self._lock:
            return self._handles.get(attempt_id)

    def remove(self, attempt_id: str) -> None:
        """Forget an attempt that ended."""
        with self._changed:
            self._handles.pop(attempt_id, None)
            self._changed.notify_all()

    def set_process(self, attempt_id: str, pgid: int) -> None:
        """Remember the process group of an attempt's command."""
        with self._lock:
            handle = self._handles.get(attempt_id)
            if handle is not None:
                handle.pgid = pgid

    def ids(self) -> list[str]:
        """Ids of the running attempts."""
        with self._lock:
            return sorted(self._handles)

    def cancel(self, attempt_id: str) -> bool:
        """Take an attempt away: its process tree is stopped and it is neither uploaded nor reported."""
        with self._lock:
            handle = self._handles.get(attempt_id)
        if handle is None:
            return False
        log.info("attempt %s: cancelling", attempt_id)
        handle.cancel.set()
        return True

    def cancel_all(self) -> list[str]:
        """Cancel every running attempt; their ids."""
        ids = self.ids()
        for attempt_id in ids:
            self.cancel(attempt_id)
        return ids

    def fence(self) -> list[str]:
        """SIGKILL and cancel (unreported) each unfenced attempt whose command runs or has not started; their ids.

        An attempt whose command already ended is left alone: its report holds a real result.
        """
        with self._lock:
            due = [h for h in self._handles.values() if not h.fenced and (h.pgid is None or group_alive(h.pgid))]
            for handle in due:
                handle.fenced = True
                handle.cancel.set()
        for handle in due:
            if handle.pgid is not None:
                with contextlib.suppress(OSError):
                    process.kill_group(handle.pgid)
        return sorted(handle.attempt_id for handle in due)

    def wait_empty(self, timeout: float) -> bool:
        """Wait until no attempt runs; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._handles:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def kill_now(self) -> None:
        """SIGKILL the process group of every attempt still registered (the last resort at exit)."""
        with self._lock:
            groups = [handle.pgid for handle in self._handles.values() if handle.pgid is not None]
        for pgid in groups:
            process.kill_group(pgid)
