"""Report delivery: the reports of finished attempts go out together, as soon as the last call is answered.

A sender thread takes every report waiting, sends them in one call and asks
the controller to fill the slots they freed: the answer carries the attempts
claimed for this node, which go straight to `on_next`. The usual path touches
no file. A batch that is not answered is spooled to disk and sent again until
it is; spooled reports survive an agent restart and are sent first by the
next run. An agent killed between a process exit and the first send loses the
report; the controller's lease then requeues the attempt, as for any attempt
whose agent died.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from nodeagent.client import ControllerClient
from nodeagent.messages import AttemptReport, AttemptSpec, ReportBatch, ReportBatchAnswer, TaskReport
from nodeagent.state import Spool

log = logging.getLogger(__name__)

MAX_BATCH = 200
"""Most reports in one call."""


class Reporter:
    """Delivers TaskReports in batches so that none is lost across an agent restart."""

    def __init__(
        self,
        client: ControllerClient,
        spool: Spool,
        node_id: str,
        *,
        on_delivered: Callable[[str], None] = lambda _: None,
        on_next: Callable[[list[AttemptSpec]], object] | None = None,
        claiming: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._client = client
        self._spool = spool
        self._node_id = node_id
        self._on_delivered = on_delivered
        self._on_next = on_next
        self._claiming = claiming
        self._queue: queue.SimpleQueue[AttemptReport | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._spooled: set[str] = set()
        """Attempts whose report is in the spool: removed from it once answered."""

    def deliver(self, attempt_id: str, report: TaskReport) -> None:
        """Queue the report for the sender thread (started on first use)."""
        self._queue.put(AttemptReport(attempt_id=attempt_id, report=report))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, name="reporter", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued (once, spooling what is not answered) and end the sender thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def pending(self) -> list[tuple[str, TaskReport]]:
        """The reports waiting in the spool."""
        return self._spool.pending()

    def replay(self, pending: list[tuple[str, TaskReport]] | None = None) -> int:
        """Queue spooled reports (all, or the given snapshot) for delivery; how many."""
        reports = self._spool.pending() if pending is None else pending
        for attempt_id, report in reports:
            self._spooled.add(attempt_id)
            log.info("attempt %s: replaying spooled report", attempt_id)
            self.deliver(attempt_id, report)
        return len(reports)

    def _send_loop(self) -> None:
        """Send batches until stopped; an unexpected error is logged and the loop goes on."""
        while True:
            first = self._queue.get()
            batch = [] if first is None else [first]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                item = self._queue.get()
                if item is None:
                    first = None
                    break
                batch.append(item)
            if batch:
                try:
                    self.send(batch)
                except Exception:
                    log.exception("sending %d reports failed unexpectedly", len(batch))
            if first is None:
                return

    def send(self, reports: list[AttemptReport]) -> ReportBatchAnswer | None:
        """Deliver one batch (asking for the next attempts unless the agent is stopping); the answer, if any."""
        refill = self._on_next is not None and not self._client.stop.is_set()
        with self._claiming() if refill else contextlib.nullcontext():
            answer = self._client.send_reports(self._node_id, ReportBatch(reports=reports, refill=refill))
            if answer is not None and answer.specs and self._on_next is not None:
                self._on_next(list(answer.specs))
        if answer is None:
            answer = self._deliver_spooled(reports)
        for item in reports:
            if answer is not None and item.attempt_id in self._spooled:
                self._spooled.discard(item.attempt_id)
                self._spool.remove(item.attempt_id)
            self._settle(item.attempt_id, answer)
        return answer

    def _deliver_spooled(self, reports: list[AttemptReport]) -> ReportBatchAnswer | None:
        """Spool an unanswered batch and send it until answered; None when the agent stops first."""
        for item in reports:
            self._spool.save(item.attempt_id, item.report)
            self._spooled.add(item.attempt_id)
        answer = self._client.deliver_reports(self._node_id, ReportBatch(reports=reports))
        if answer is None:
            log.info("agent stopping, %d reports kept in the spool", len(reports))
        return answer

    def _settle(self, attempt_id: str, answer: ReportBatchAnswer | None) -> None:
        """Log a refusal, then tell the agent the attempt is done with."""
        result = None if answer is None else answer.answers.get(attempt_id)
        if answer is not None and (result is None or not result.accepted):
            reason = "no answer" if result is None else result.reason
            log.warning("attempt %s: controller refused the report: %s", attempt_id, reason)
        self._on_delivered(attempt_id)
