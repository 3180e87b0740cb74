"""An in-process controller behind httpx.MockTransport, for agent tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import httpx

from nodeagent import messages
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.messages import AttemptSpec, HeartbeatAnswer, PoolConfig

SECRET = "test-secret"


@dataclass
class FakeController:
    """Answers claims from `specs`, records reports and heartbeats, and can list stale attempts."""

    specs: dict[str, AttemptSpec] = field(default_factory=dict)
    reports: dict[str, dict[str, object]] = field(default_factory=dict)
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
            if path.endswith("/claim"):
                spec = self.specs.get(path.split("/")[-2])
                return httpx.Response(200, content=spec.model_dump_json()) if spec else httpx.Response(409)
            if path.endswith("/report"):
                self.reports[path.split("/")[-2]] = body
                return httpx.Response(self.report_status, json={"accepted": True})
            self.heartbeats.append(body)
            return httpx.Response(200, content=self._answer(body).model_dump_json())

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
