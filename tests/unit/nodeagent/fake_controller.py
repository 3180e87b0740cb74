"""An in-process controller behind httpx.MockTransport, for agent tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from nodeagent import messages
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.messages import AttemptSpec, ClaimAnswer, HeartbeatAnswer, PoolConfig, ReportAnswer, ReportBatchAnswer

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

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert self._signed(request)
        path = request.url.path
        body = json.loads(request.content)
        with self.lock:
            if path.endswith("/claims"):
                ids = body["attempt_ids"]
                known = [i for i in ids if i in self.specs]
                answer = ClaimAnswer(specs=[self.specs[i] for i in known], refused=[i for i in ids if i not in known])
                return httpx.Response(200, content=answer.model_dump_json())
            if path.endswith("/reports"):
                return self._reports(body)
            self.heartbeats.append(body)
            return httpx.Response(200, content=self._answer(body).model_dump_json())

    def _reports(self, body: dict[str, Any]) -> httpx.Response:
        """Record each report; answer with the refill when asked for one."""
        if self.report_status >= 300:
            return httpx.Response(self.report_status)
        self.refills.append(body["refill"])
        for item in body["reports"]:
            self.reports[item["attempt_id"]] = item["report"]
        specs, self.next_specs = (self.next_specs, []) if body["refill"] else ([], self.next_specs)
        accepted = {item["attempt_id"]: ReportAnswer(accepted=True) for item in body["reports"]}
        return httpx.Response(200, content=ReportBatchAnswer(answers=accepted, specs=specs).model_dump_json())

    def _answer(self, beat: dict[str, object]) -> HeartbeatAnswer:
        """Stale attempts, the lease, and the pool config when the node reports another version."""
        config = self.pool_config
        changed = config is not None and beat.get("pool_config_version") != config.version
        return HeartbeatAnswer(
            stale_attempts=self.stale, pool_config=config if changed else None, lease_seconds=self.lease_seconds
        )

    def client(self) -> ControllerClient:
        http = httpx.Client(transport=httpx.MockTransport(self.handle))
        return ControllerClient(
            "http://controller",
            SECRET,
            http=http,
            claim_retry=RetryPolicy(attempts=2),
            report_retry=RetryPolicy(attempts=3, first_delay=0.01),
        )

    @staticmethod
    def _signed(request: httpx.Request) -> bool:
        expected = messages.node_signature(
            SECRET, request.method, request.url.path, request.headers[messages.DATE_HEADER], request.content
        )
        return messages.signatures_match(expected, request.headers[messages.SIGNATURE_HEADER])
