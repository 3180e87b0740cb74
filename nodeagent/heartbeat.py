"""The heartbeat loop: tells the controller the node is alive and what it runs, stops what is stale.

The rest of each answer (the pool config, the lease length, a command) goes to `on_answer`; the first
answer after failures also calls `on_recover` (the client then retries pending reports at once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from nodeagent.errors import ControllerUnavailable
from nodeagent.messages import HeartbeatAnswer, NodeHeartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    """Sends a NodeHeartbeat every `interval` seconds from a daemon thread."""

    def __init__(
        self,
        send: Callable[[NodeHeartbeat], HeartbeatAnswer],
        build: Callable[[], NodeHeartbeat],
        on_stale: Callable[[list[str]], None],
        interval: float,
        on_answer: Callable[[HeartbeatAnswer], None] | None = None,
        on_recover: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._build = build
        self._on_stale = on_stale
        self._on_answer = on_answer
        self._on_recover = on_recover
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def beat(self) -> bool:
        """Send one heartbeat and act on its answer; False when the controller did not answer."""
        beat = self._build()
        try:
            answer = self._send(beat)
        except ControllerUnavailable as exc:
            self._failures += 1
            log.warning("node %s: heartbeat %s failed in a row: %s", beat.node_id, self._failures, exc)
            return False
        if self._failures:
            log.info("node %s: heartbeat answered again after %s failures", beat.node_id, self._failures)
            if self._on_recover is not None:
                self._on_recover()
        self._failures = 0
        if answer.stale_attempts:
            log.warning("node %s: controller reports stale attempts %s", beat.node_id, answer.stale_attempts)
            self._on_stale(list(answer.stale_attempts))
        if self._on_answer is not None:
            self._on_answer(answer)
        return True

    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 35)
            self._thread = None

    def _loop(self) -> None:
        """Beat until stopped; an unexpected error is logged and the loop goes on."""
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception:
                log.exception("heartbeat failed unexpectedly")
