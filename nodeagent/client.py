"""Signed HTTP calls from the agent to the controller: claim, report, heartbeat."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from nodeagent import messages
from nodeagent.errors import ControllerUnavailable
from nodeagent.messages import (
    AttemptSpec,
    ClaimRequest,
    Coordinated,
    GangState,
    HeartbeatAnswer,
    JobTaskReport,
    NodeHeartbeat,
    ReportAnswer,
    TaskReport,
)

log = logging.getLogger(__name__)

STALE_STATUSES = frozenset({404, 409, 410})
"""Answers meaning the attempt is no longer this node's: stop trying."""


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
        http: httpx.Client | None = None,
        claim_retry: RetryPolicy | None = None,
        report_retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], bool] | None = None,
        heartbeat_timeout: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._prefix = urlsplit(self._base).path
        self._secret = secret
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0))
        self._claim_retry = claim_retry or RetryPolicy(attempts=5)
        self._report_retry = report_retry or RetryPolicy(attempts=None)
        self._heartbeat_timeout = heartbeat_timeout
        self.stop = stop or threading.Event()
        self._wake = threading.Condition()
        self._sleep = sleep or self._pause

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

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

    def post(self, path: str, model: BaseModel, timeout: float | None = None) -> httpx.Response:
        """POST `model` as JSON to `path` under the controller URL, signed (with the client's timeout by default)."""
        body = model.model_dump_json().encode()
        headers = signed_headers(self._secret, "POST", self._prefix + path, body)
        headers["content-type"] = "application/json"
        if timeout is None:
            return self._http.post(self._base + path, content=body, headers=headers)
        return self._http.post(self._base + path, content=body, headers=headers, timeout=timeout)

    def claim(self, attempt_id: str, node_id: str) -> AttemptSpec | None:
        """Claim an attempt; its spec, or None when it is someone else's or stale."""
        response = self._call(messages.claim_path(attempt_id), ClaimRequest(node_id=node_id), self._claim_retry)
        if response is None or response.status_code in STALE_STATUSES:
            log.info("attempt %s: claim refused (%s)", attempt_id, _status(response))
            return None
        try:
            return AttemptSpec.model_validate_json(response.content)
        except ValidationError as exc:
            log.error("attempt %s: claim answer is not an attempt spec: %s", attempt_id, exc)
            return None

    def report(self, attempt_id: str, report: TaskReport) -> ReportAnswer | None:
        """Deliver a report until answered; the answer, or None when stale or stopped."""
        response = self._call(messages.report_path(attempt_id), report, self._report_retry)
        return _report_answer(attempt_id, response)

    def report_once(self, attempt_id: str, report: TaskReport) -> tuple[bool, ReportAnswer | None]:
        """Send a report once: (answered, the answer or None when stale); not answered on errors and 5xx."""
        response = self._try_post(messages.report_path(attempt_id), report)
        if response is None or not (response.is_success or response.status_code in STALE_STATUSES):
            return False, None
        return True, _report_answer(attempt_id, response)

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
        except httpx.HTTPError as exc:
            raise ControllerUnavailable(f"heartbeat failed: {exc}") from exc
        if not response.is_success:
            raise ControllerUnavailable(f"heartbeat answered {response.status_code}: {response.text[:200]}")
        return HeartbeatAnswer.model_validate_json(response.content)

    def _call(self, path: str, model: BaseModel, policy: RetryPolicy) -> httpx.Response | None:
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

    def _try_post(self, path: str, model: BaseModel) -> httpx.Response | None:
        """One POST; None on a network error."""
        try:
            response = self.post(path, model)
        except httpx.HTTPError as exc:
            log.warning("POST %s failed: %s", path, exc)
            return None
        if not response.is_success and response.status_code not in STALE_STATUSES:
            log.warning("POST %s answered %s: %s", path, response.status_code, response.text[:200])
        return response


def _report_answer(attempt_id: str, response: httpx.Response | None) -> ReportAnswer | None:
    """The controller's answer to a report; None when there was none or the attempt is stale."""
    if response is None or response.status_code in STALE_STATUSES:
        log.warning("attempt %s: report not accepted (%s)", attempt_id, _status(response))
        return None
    try:
        return ReportAnswer.model_validate_json(response.content)
    except ValidationError:
        return ReportAnswer(accepted=True)


def _status(response: httpx.Response | None) -> str:
    """Status code of a response for logs."""
    return "no answer" if response is None else str(response.status_code)
