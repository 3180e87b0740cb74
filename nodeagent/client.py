"""Signed HTTP calls from the agent to the controller: claims, reports, heartbeats and the rest."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from nodeagent import messages
from nodeagent.errors import ControllerUnavailable
from nodeagent.messages import (
    ClaimAnswer,
    ClaimBatch,
    ClaimRequest,
    Coordinated,
    GangState,
    HeartbeatAnswer,
    JobTaskReport,
    NodeHeartbeat,
    ReportBatch,
    ReportBatchAnswer,
)
from nodeagent.transport import Answer, Call, PooledTransport, Transport, Unreachable

log = logging.getLogger(__name__)

STALE_STATUSES = frozenset({404, 409, 410})
"""Answers meaning the attempt is no longer this node's: stop trying."""

CALL_TIMEOUT_SECONDS = 30.0
"""How long a call waits for its answer unless it says otherwise."""


def signed_headers(secret: str, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Date and signature headers for a request to `path` (the raw path, without query string)."""
    date = formatdate(now, usegmt=True)
    signature = messages.node_signature(secret, method, path, date, body)
    return {messages.DATE_HEADER: date, messages.SIGNATURE_HEADER: signature}


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts of one call."""

    attempts: int | None = 5
    """How many tries in total; None retries until stopped."""

    first_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, tries: int) -> float:
        """Seconds to wait after `tries` failed tries."""
        return float(min(self.max_delay, self.first_delay * 2 ** max(tries - 1, 0)))


class ControllerClient:
    """The agent's signed HTTP client to the controller."""

    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        transport: Transport | None = None,
        claim_retry: RetryPolicy | None = None,
        report_retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], bool] | None = None,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._prefix = urlsplit(self._base).path
        self._secret = secret
        self._transport = transport or PooledTransport()
        self._claim_retry = claim_retry or RetryPolicy(attempts=5)
        self._report_retry = report_retry or RetryPolicy(attempts=None)
        self._heartbeat_timeout = heartbeat_timeout
        self.stop = stop or threading.Event()
        self._wake = threading.Condition()
        self._sleep = sleep or self._pause

    def close(self) -> None:
        """Close the connection pool."""
        if isinstance(self._transport, PooledTransport):
            self._transport.close()

    def halt(self) -> None:
        """Stop every retry loop now (the agent is stopping)."""
        self.stop.set()
        self.wake_retries()

    def wake_retries(self) -> None:
        """End the back-off pauses of pending calls early (the controller answers again)."""
        with self._wake:
            self._wake.notify_all()

    def _pause(self, seconds: float) -> bool:
        """Wait out one back-off delay, or less when woken; True when the client is stopping."""
        with self._wake:
            if not self.stop.is_set():
                self._wake.wait(seconds)
        return self.stop.is_set()

    def post(self, path: str, model: BaseModel, timeout: float = CALL_TIMEOUT_SECONDS) -> Answer:
        """POST `model` as JSON to `path` under the controller URL, signed; raises `Unreachable` without answer."""
        body = model.model_dump_json().encode()
        signed_path = self._prefix + path
        headers = signed_headers(self._secret, "POST", signed_path, body)
        headers["content-type"] = "application/json"
        return self._transport(Call("POST", signed_path, self._base + path, headers, body, timeout))

    def claim_all(self, node_id: str, attempt_ids: list[str]) -> ClaimAnswer:
        """Claim offered attempts; the controller's answer, or all of them refused when it gave none."""
        response = self._call(messages.claims_path(node_id), ClaimBatch(attempt_ids=attempt_ids), self._claim_retry)
        answer = ClaimAnswer(refused=attempt_ids)
        if response is not None and response.is_success:
            try:
                answer = ClaimAnswer.model_validate_json(response.content)
            except ValidationError as exc:
                log.error("claim answer is not a list of attempt specs: %s", exc)
        for attempt_id in answer.refused:
            log.info("attempt %s: claim refused (%s)", attempt_id, _status(response))
        return answer

    def send_reports(self, node_id: str, batch: ReportBatch) -> ReportBatchAnswer | None:
        """Send reports once; the answer, or None when there was none (a network error or a 5xx)."""
        response = self._try_post(messages.reports_path(node_id), batch)
        if response is None or response.status_code >= 500:
            return None
        if response.is_success:
            try:
                return ReportBatchAnswer.model_validate_json(response.content)
            except ValidationError as exc:
                log.error("report answer is not understood: %s", exc)
        # Refused as a whole: sending it again would be refused again.
        return ReportBatchAnswer()

    def deliver_reports(self, node_id: str, batch: ReportBatch) -> ReportBatchAnswer | None:
        """Send reports until answered (backing off between tries); None when retries ran out or the client stopped."""
        tries = 0
        while not self.stop.is_set():
            tries += 1
            answer = self.send_reports(node_id, batch)
            if answer is not None:
                return answer
            if self._report_retry.attempts is not None and tries >= self._report_retry.attempts:
                break
            if self._sleep(self._report_retry.delay(tries)):
                break
        return None

    def coordinated(self, attempt_id: str, result: Coordinated) -> None:
        """Tell the controller how an instance's coordination command ended (retried until answered)."""
        response = self._call(messages.coordinated_path(attempt_id), result, self._report_retry)
        if response is None or not response.is_success:
            log.warning("attempt %s: coordination result not accepted (%s)", attempt_id, _status(response))

    def gang(self, attempt_id: str) -> GangState:
        """Whether every instance of the primary's task coordinated; `failed` when the primary is stale."""
        response = self._call(messages.gang_path(attempt_id), ClaimRequest(node_id=""), self._claim_retry)
        if response is None or not response.is_success:
            return GangState(state="failed")
        return GangState.model_validate_json(response.content)

    def job_task_report(self, report: JobTaskReport) -> None:
        """Deliver a job preparation or release report (a few tries; the controller keeps the latest)."""
        response = self._call(messages.job_task_path(report.node_id), report, self._claim_retry)
        if response is None or not response.is_success:
            log.warning("job %s: %s report not accepted (%s)", report.job_id, report.kind, _status(response))

    def heartbeat(self, beat: NodeHeartbeat) -> HeartbeatAnswer:
        """Send one heartbeat; raises ControllerUnavailable when it is not answered with 2xx."""
        try:
            response = self.post(messages.heartbeat_path(beat.node_id), beat, timeout=self._heartbeat_timeout)
        except Unreachable as exc:
            raise ControllerUnavailable(f"heartbeat failed: {exc}") from exc
        if not response.is_success:
            raise ControllerUnavailable(f"heartbeat answered {response.status_code}: {response.text[:200]}")
        return HeartbeatAnswer.model_validate_json(response.content)

    def _call(self, path: str, model: BaseModel, policy: RetryPolicy) -> Answer | None:
        """POST with retries until 2xx or a stale status; None when retries ran out or the client stopped."""
        tries = 0
        while not self.stop.is_set():
            tries += 1
            response = self._try_post(path, model)
            if response is not None and (response.is_success or response.status_code in STALE_STATUSES):
                return response
            if policy.attempts is not None and tries >= policy.attempts:
                log.warning("POST %s: giving up after %s tries", path, tries)
                return None
            if self._sleep(policy.delay(tries)):
                break
        return None

    def _try_post(self, path: str, model: BaseModel) -> Answer | None:
        """One POST; None on a network error."""
        try:
            response = self.post(path, model)
        except Unreachable as exc:
            log.warning("POST %s failed: %s", path, exc)
            return None
        if not response.is_success and response.status_code not in STALE_STATUSES:
            log.warning("POST %s answered %s: %s", path, response.status_code, response.text[:200])
        return response


def _status(response: Answer | None) -> str:
    """Status code of a response for logs."""
    return "no answer" if response is None else str(response.status_code)
