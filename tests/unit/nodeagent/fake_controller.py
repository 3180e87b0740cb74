"""An in-process controller the agent's client calls directly, for agent tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from nodeagent import messages
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.messages import AttemptSpec, ClaimAnswer, HeartbeatAnswer, PoolConfig, ReportAnswer, ReportBatchAnswer
from nodeagent.transport import Answer, Call

SECRET = "test-secret"


@dataclass
class FakeController:
    """Answers claims from `specs`, records reports and heartbeats, and can list stale attempts.

    A report call asking for a refill is answered with the specs queued in `next_specs`.
    """

    specs: dict[str, AttemptSpec] = field(default_factory=dict)
    reports: dict[str, dict[str, object]] = field(default_factory=dict)
    next_specs: list[AttemptSpec] = field(default_factory=list)
    refills: list[bool] = field(default_factory=list)
    heartbeats: list[dict[str, object]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    report_status: int = 200
    pool_config: PoolConfig | None = None
    lease_seconds: float = 30.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, call: Call) -> Answer:
        assert self._signed(call)
        path = call.path
        body = json.loads(call.body)
        with self.lock:
            if path.endswith("/claims"):
                ids = body["attempt_ids"]
                known = [i for i in ids if i in self.specs]
                answer = ClaimAnswer(specs=[self.specs[i] for i in known], refused=[i for i in ids if i not in known])
                return Answer(200, answer.model_dump_json().encode())
            if path.endswith("/reports"):
                return self._reports(body)
            self.heartbeats.append(body)
            return Answer(200, self._answer(body).model_dump_json().encode())

    def _reports(self, body: dict[str, Any]) -> Answer:
        """Record each report; answer with the refill when asked for one."""
        if self.report_status >= 300:
            return Answer(self.report_status)
        self.refills.append(body["refill"])
        for item in body["reports"]:
            self.reports[item["attempt_id"]] = item["report"]
        specs, self.next_specs = (self.next_specs, []) if body["refill"] else ([], self.next_specs)
        accepted = {item["attempt_id"]: ReportAnswer(accepted=True) for item in body["reports"]}
        return Answer(200, ReportBatchAnswer(answers=accepted, specs=specs).model_dump_json().encode())

    def _answer(self, beat: dict[str, object]) -> HeartbeatAnswer:
        """Stale attempts, the lease, and the pool config when the node reports another version."""
        config = self.pool_config
        changed = config is not None and beat.get("pool_config_version") != config.version
        return HeartbeatAnswer(
            stale_attempts=self.stale, pool_config=config if changed else None, lease_seconds=self.lease_seconds
        )

    def client(self) -> ControllerClient:
        return ControllerClient(
            "http://controller",
            SECRET,
            transport=self.handle,
            claim_retry=RetryPolicy(attempts=2),
            report_retry=RetryPolicy(attempts=3, first_delay=0.01),
        )

    @staticmethod
    def _signed(call: Call) -> bool:
        date = call.headers[messages.DATE_HEADER]
        expected = messages.node_signature(SECRET, call.method, call.path, date, call.body)
        return messages.signatures_match(expected, call.headers[messages.SIGNATURE_HEADER])
