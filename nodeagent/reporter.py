"""Report delivery: send at once; when that is not answered, spool to disk and send until answered.

A report is spooled only when its first send fails, so the usual path touches
no file. An agent killed between a process exit and the first send loses the
report; the controller's lease then requeues the attempt, as for any attempt
whose agent died.
"""

from __future__ import annotations

import logging

from nodeagent.client import ControllerClient
from nodeagent.messages import ReportAnswer, TaskReport
from nodeagent.state import Spool

log = logging.getLogger(__name__)


class Reporter:
    """Delivers TaskReports so that none is lost across an agent restart."""

    def __init__(self, client: ControllerClient, spool: Spool) -> None:
        self._client = client
        self._spool = spool

    def deliver(self, attempt_id: str, report: TaskReport) -> ReportAnswer | None:
        """Send the report; unanswered, spool it and send until answered; it stays spooled if the agent stops first."""
        answered, answer = self._client.report_once(attempt_id, report)
        if not answered:
            self._spool.save(attempt_id, report)
            answer = self._client.report(attempt_id, report)
            if answer is None and self._client.stop.is_set():
                log.info("attempt %s: agent stopping, report kept in the spool", attempt_id)
                return None
        self._spool.remove(attempt_id)
        if answer is not None and not answer.accepted:
            log.warning("attempt %s: controller refused the report: %s", attempt_id, answer.reason)
        return answer

    def pending(self) -> list[tuple[str, TaskReport]]:
        """The reports waiting in the spool."""
        return self._spool.pending()

    def replay(self, pending: list[tuple[str, TaskReport]] | None = None) -> int:
        """Deliver spooled reports (all, or the given snapshot); how many were delivered or dropped as stale."""
        count = 0
        for attempt_id, report in self._spool.pending() if pending is None else pending:
            if self._client.stop.is_set():
                break
            log.info("attempt %s: replaying spooled report", attempt_id)
            self.deliver(attempt_id, report)
            count += 1
        return count
