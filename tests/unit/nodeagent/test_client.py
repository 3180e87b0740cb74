from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from nodeagent import messages
from nodeagent.client import ControllerClient, RetryPolicy
from nodeagent.messages import AttemptReport, ClaimAnswer, NodeHeartbeat, ReportBatch, TaskReport
from nodeagent.testing import make_attempt_spec
from nodeagent.transport import Answer, Call, Unreachable

SECRET = "s3cret"


def client_for(
    handler: Callable[[Call], Answer],
    *,
    base: str = "http://controller:8080",
    report_tries: int | None = 5,
) -> ControllerClient:
    return ControllerClient(
        base,
        SECRET,
        transport=handler,
        claim_retry=RetryPolicy(attempts=3),
        report_retry=RetryPolicy(attempts=report_tries),
        sleep=lambda _: False,
    )


def signature_ok(call: Call) -> bool:
    date = call.headers[messages.DATE_HEADER]
    expected = messages.node_signature(SECRET, call.method, call.path, date, call.body)
    return messages.signatures_match(expected, call.headers[messages.SIGNATURE_HEADER])


def test_claim_is_signed_and_returns_the_specs() -> None:
    seen: list[Call] = []
    spec = make_attempt_spec(attempt_id="a1")

    def handler(call: Call) -> Answer:
        seen.append(call)
        return Answer(200, ClaimAnswer(specs=[spec], refused=["a2"]).model_dump_json().encode())

    answer = client_for(handler).claim_all("node-1", ["a1", "a2"])
    assert (answer.specs, answer.refused) == ([spec], ["a2"])
    assert seen[0].path == messages.claims_path("node-1")
    assert json.loads(seen[0].body) == {"attempt_ids": ["a1", "a2"]}
    assert signature_ok(seen[0])


def test_signature_covers_a_controller_path_prefix() -> None:
    seen: list[Call] = []

    def handler(call: Call) -> Answer:
        seen.append(call)
        return Answer(409)

    client_for(handler, base="http://controller:8080/batch/").claim_all("n", ["a1"])
    assert seen[0].path == "/batch" + messages.claims_path("n")
    assert signature_ok(seen[0])


def test_claim_conflict_refuses_every_attempt() -> None:
    calls: list[int] = []

    def handler(call: Call) -> Answer:
        calls.append(1)
        return Answer(409)

    assert client_for(handler).claim_all("n", ["a1", "a2"]).refused == ["a1", "a2"]
    assert calls == [1]


def test_claim_network_errors_retry_a_few_times_then_refuse() -> None:
    calls: list[int] = []

    def handler(call: Call) -> Answer:
        calls.append(1)
        raise Unreachable("refused")

    assert client_for(handler).claim_all("n", ["a1"]).refused == ["a1"]
    assert len(calls) == 3


def batch() -> ReportBatch:
    report = TaskReport(node_id="n", outcome="exited", exit_code=0, end_time=datetime.now(UTC))
    return ReportBatch(reports=[AttemptReport(attempt_id="a1", report=report)], refill=True)


def test_reports_go_to_the_node_path_with_their_refill() -> None:
    seen: list[Call] = []

    def handler(call: Call) -> Answer:
        seen.append(call)
        return Answer(200, json.dumps({"answers": {"a1": {"accepted": True}}}).encode())

    answer = client_for(handler).send_reports("n", batch())
    assert answer is not None and answer.answers["a1"].accepted
    assert seen[0].path == messages.reports_path("n") and signature_ok(seen[0])
    assert json.loads(seen[0].body)["refill"] is True


def test_reports_are_retried_until_answered() -> None:
    answers = iter([Answer(503), Answer(500), Answer(200, json.dumps({"answers": {}}).encode())])
    assert client_for(lambda call: next(answers)).deliver_reports("n", batch()) is not None


def test_reports_refused_as_a_whole_are_not_retried() -> None:
    calls: list[int] = []

    def handler(call: Call) -> Answer:
        calls.append(1)
        return Answer(400)

    answer = client_for(handler).deliver_reports("n", batch())
    assert answer is not None and answer.answers == {}
    assert calls == [1]


def test_report_retries_stop_when_the_client_stops() -> None:
    client: ControllerClient

    def handler(call: Call) -> Answer:
        client.stop.set()
        return Answer(500)

    client = client_for(handler, report_tries=None)
    assert client.deliver_reports("n", batch()) is None


def test_heartbeat_returns_the_answer() -> None:
    beat = NodeHeartbeat(node_id="n1", pool_id="p", task_slots=2, file_server_url="http://h:1")

    def handler(call: Call) -> Answer:
        assert call.path == messages.heartbeat_path("n1") and signature_ok(call)
        return Answer(200, json.dumps({"stale_attempts": ["x"]}).encode())

    assert client_for(handler).heartbeat(beat).stale_attempts == ["x"]


def test_retry_policy_backs_off_exponentially_to_a_cap() -> None:
    policy = RetryPolicy(first_delay=1.0, max_delay=5.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
