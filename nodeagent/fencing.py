"""Self-fencing: an agent that cannot renew its leases kills its attempts before the controller requeues them.

The controller renews the lease of every attempt a heartbeat lists until (the time it handles the
heartbeat) + L, where L is the `lease_seconds` of its answer, and requeues an attempt once its lease is
over. The agent notes when each answer arrives, which is no earlier than the controller's renewal. When
no heartbeat has been answered for the fencing window W = L - 2h (h: the heartbeat interval; L / 2 when
that is larger; `fence_seconds` before the first answer), it SIGKILLs the process tree of every attempt
whose command still runs and does not report them: their leases are about to expire, and the controller
would refuse the reports anyway.

Overlap window. The old command is dead by (last answer) + W + one check interval, the lease runs out no
earlier than (last answer) + L - (answer transit), and the replacement starts only after the next reconcile
pass, an offer, a broker delivery and a claim on another node. So the fenced attempt and its replacement
never run at once: the gap is about 2h minus the check interval and the transit time, which is why the
margin is two heartbeats (a heartbeat call itself is bounded by `heartbeat_timeout_seconds`, and the check
runs on its own thread, so a hung call does not delay the fence).

The agent keeps heart-beating while fenced and resumes normally once an answer arrives. Attempts whose
command already ended are not touched: their reports hold real results and stay in the spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.2
"""How often the fencing thread compares the silence with the window."""


def fence_window(lease_seconds: float, heartbeat_seconds: float) -> float:
    """Seconds without an answered heartbeat after which the agent fences: the lease minus two heartbeats."""
    return max(lease_seconds - 2 * heartbeat_seconds, lease_seconds / 2)


class Fence:
    """Watches the time since the last answered heartbeat and fences the running attempts when it is too long."""

    def __init__(
        self,
        fence: Callable[[], list[str]],
        *,
        heartbeat_seconds: float,
        default_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fence = fence
        self._heartbeat = heartbeat_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last_answer = clock()
        self._window = default_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def window(self) -> float:
        """The fencing window in effect."""
        with self._lock:
            return self._window

    def silence(self) -> float:
        """Seconds since the last answered heartbeat (or since the agent started)."""
        with self._lock:
            return self._clock() - self._last_answer

    def heard(self, lease_seconds: float) -> None:
        """A heartbeat was answered, announcing `lease_seconds`."""
        with self._lock:
            self._last_answer = self._clock()
            self._window = fence_window(lease_seconds, self._heartbeat)

    def check(self) -> list[str]:
        """Fence the running attempts when the silence is longer than the window; the ids fenced now."""
        silence, window = self.silence(), self.window
        if silence <= window:
            return []
        fenced = self._fence()
        if fenced:
            log.warning(
                "no heartbeat answered for %.1f s (fencing window %.1f s): killed attempts %s, which will not be "
                "reported",
                silence,
                window,
                fenced,
            )
        return fenced

    def start(self) -> None:
        """Start the checking thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="fence", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the checking thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _loop(self) -> None:
        """Check until stopped; an unexpected error is logged and the loop goes on."""
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:
                log.exception("fencing check failed unexpectedly")
