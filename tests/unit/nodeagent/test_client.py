from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from nodeagent import messages
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.messages import NodeHeartbeat, TaskReport
from nodeagent.testing import make_attempt_spec

SECRET = "s3cret"


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    base: str = "http://controller:8080",
    report_tries: int | None = 5,
) -> ControllerClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return ControllerClient(
        base,
        SECRET,
        http=http,
        claim_retry=RetryPolicy(attempts=3),
        report_retry=RetryPolicy(attempts=report_tries),
        sleep=lambda _: False,
    )


def signature_ok(request: httpx.Request) -> bool:
    date = request.headers[messages.DATE_HEADER]
    expected = messages.node_signature(
        SECRET, request.method, request.url.raw_path.decode().split("?")[0], date, request.content
    )
    return messages.signatures_match(expected, request.headers[messages.SIGNATURE_HEADER])


def test_claim_is_signed_and_returns_the_spec() -> None:
    seen: list[httpx.Request] = []
    spec = make_attempt_spec(attempt_id="a1")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=spec.model_dump_json())

    assert client_for(handler).claim("a1", "node-1") == spec
    assert seen[0].url.path == messages.claim_path("a1")
    assert json.loads(seen[0].content) == {"node_id": "node-1"}
    assert signature_ok(seen[0])


def test_signature_covers_a_controller_path_prefix() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(409)

    client_for(handler, base="http://controller:8080/batch/").claim("a1", "n")
    assert seen[0].url.path == "/batch" + messages.claim_path("a1")
    assert signature_ok(seen[0])


def test_claim_conflict_means_drop() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(409)

    assert client_for(handler).claim("a1", "n") is None
    assert calls == [1]


def test_claim_network_errors_retry_a_few_times_then_drop() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    assert client_for(handler).claim("a1", "n") is None
    assert len(calls) == 3


def test_report_retries_until_answered() -> None:
    answers = iter([httpx.Response(503), httpx.Response(500), httpx.Response(200, json={"accepted": True})])
    report = TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))
    answer = client_for(lambda request: next(answers)).report("a1", report)
    assert answer is not None and answer.accepted


def test_report_stale_is_final() -> None:
    report = TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))
    assert client_for(lambda request: httpx.Response(409)).report("a1", report) is None


def test_report_stops_when_the_client_stops() -> None:
    report = TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))
    client: ControllerClient

    def handler(request: httpx.Request) -> httpx.Response:
        client.stop.set()
        return httpx.Response(500)

    client = client_for(handler, report_tries=None)
    assert client.report("a1", report) is None


def test_heartbeat_returns_the_answer() -> None:
    beat = NodeHeartbeat(node_id="n1", pool_id="p", task_slots=2, file_server_url="http://h:1")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == messages.heartbeat_path("n1") and signature_ok(request)
        return httpx.Response(200, json={"stale_attempts": ["x"]})

    assert client_for(handler).heartbeat(beat).stale_attempts == ["x"]


def test_retry_policy_backs_off_exponentially_to_a_cap() -> None:
    policy = RetryPolicy(first_delay=1.0, max_delay=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
