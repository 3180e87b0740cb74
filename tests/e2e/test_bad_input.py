"""Bad requests get Azure's error code and body, never a 500, and change nothing accepted before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from batchyard.client import BatchClient
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

JOB = {"id": "BadInputJob", "poolInfo": {"poolId": "no-such-pool"}}
TASK = {"id": "KeepMe", "commandLine": "/bin/true"}


@pytest.fixture(scope="module")
def client(shared_stack: LocalStack) -> Iterator[BatchClient]:
    with shared_stack.client() as client:
        assert client.post("/jobs", JOB).status_code == 201
        assert client.post("/jobs/BadInputJob/tasks", TASK).status_code == 201
        yield client


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["message"]["lang"] == "en-US" and body["message"]["value"]
    return body


def _values(body: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body.get("values", [])}


def _unchanged(client: BatchClient) -> None:
    task = client.get("/jobs/badinputjob/tasks/keepme").json()
    assert (task["id"], task["commandLine"]) == ("KeepMe", "/bin/true")
    assert client.get("/jobs/BadInputJob").json()["poolInfo"] == {"poolId": "no-such-pool"}


def test_malformed_json(client: BatchClient) -> None:
    _error(client.request("POST", "/jobs/BadInputJob/tasks", content=b'{"id": "x", '), 400, "InvalidRequestBody")
    _unchanged(client)


@pytest.mark.parametrize(("body", "name"), [({"commandLine": "x"}, "id"), ({"id": "x"}, "commandLine")])
def test_missing_required_property(client: BatchClient, body: dict[str, str], name: str) -> None:
    error = _error(client.post("/jobs/BadInputJob/tasks", body), 400, "MissingRequiredProperty")
    assert _values(error)["PropertyName"] == name
    _unchanged(client)


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/jobs/BadInputJob", {"priority": 1}, "MissingRequiredProperty"),
        ("/jobs/BadInputJob", {"poolInfo": {"poolId": "no-such-pool"}, "priority": 5000}, "OutOfRangePriority"),
        ("/jobs/BadInputJob/tasks/KeepMe", {"constraints": {"maxTaskRetryCount": -2}}, "InvalidPropertyValue"),
        ("/jobs/BadInputJob/tasks/KeepMe", {"constraints": {"maxWallClockTime": "soon"}}, "InvalidPropertyValue"),
    ],
)
def test_replacements_that_break_the_rules_change_nothing(
    client: BatchClient, path: str, body: dict[str, Any], code: str
) -> None:
    _error(client.request("PUT", path, body), 400, code)
    _unchanged(client)
    assert client.get("/jobs/BadInputJob").json()["priority"] == 0


UNKNOWN_PACKAGE = "InvalidApplicationPackageReferences"
POOL = {"id": "BadInputPool", "vmSize": "small", "metadata": [{"name": "keep", "value": "me"}]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PATCH", "", {"startTask": {"waitForSuccess": True}}, 400, "MissingRequiredProperty"),
        ("PATCH", "", {"startTask": {"commandLine": "x", "maxTaskRetryCount": -2}}, 400, "InvalidPropertyValue"),
        ("PATCH", "", {"applicationPackageReferences": [{"applicationId": "no"}]}, 409, UNKNOWN_PACKAGE),
        ("POST", "/updateproperties", {"applicationPackageReferences": []}, 400, "MissingRequiredProperty"),
    ],
)  # fmt: skip
def test_pool_updates_that_break_the_rules_change_nothing(
    client: BatchClient, method: str, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    if client.get("/pools/BadInputPool").status_code == 404:
        assert client.post("/pools", POOL).status_code == 201
    _error(client.request(method, f"/pools/BadInputPool{path}", body), status, code)
    pool = client.get("/pools/BadInputPool").json()
    assert (pool["metadata"], "startTask" in pool) == (POOL["metadata"], False)


@pytest.mark.parametrize("bad_id", ["x" * 65, "with space", "semi;colon", "dot.ted"])
def test_invalid_ids(client: BatchClient, bad_id: str) -> None:
    error = _error(client.post("/jobs", {"id": bad_id, "poolInfo": {"poolId": "p"}}), 400, "InvalidPropertyValue")
    assert _values(error)["PropertyName"] == "id"
    _error(client.post("/jobs/BadInputJob/tasks", {"id": bad_id, "commandLine": "x"}), 400, "InvalidPropertyValue")
    _unchanged(client)


def test_ids_differing_only_by_case_conflict_and_keep_the_original(client: BatchClient) -> None:
    _error(client.post("/jobs", {**JOB, "id": "BADINPUTJOB"}), 409, "JobExists")
    _error(
        client.post("/jobs/BadInputJob/tasks", {**TASK, "id": "keepME", "commandLine": "/bin/false"}), 409, "TaskExists"
    )
    assert client.get("/jobs/badinputjob").json()["id"] == "BadInputJob"
    _unchanged(client)


def test_unknown_job(client: BatchClient) -> None:
    _error(client.get("/jobs/NoSuchJob"), 404, "JobNotFound")
    _error(client.post("/jobs/NoSuchJob/tasks", TASK), 404, "JobNotFound")
    _error(client.get("/jobs/BadInputJob/tasks/NoSuchTask"), 404, "TaskNotFound")


def test_more_than_100_tasks_in_one_collection(client: BatchClient) -> None:
    tasks = [{"id": f"many{i}", "commandLine": "/bin/true"} for i in range(101)]
    _error(client.post("/jobs/BadInputJob/addtaskcollection", {"value": tasks}), 413, "RequestBodyTooLarge")
    assert client.get("/jobs/BadInputJob/tasks/many0").status_code == 404


def test_collection_reports_each_bad_task_and_adds_the_good_ones(client: BatchClient) -> None:
    tasks = [{"id": "good1", "commandLine": "/bin/true"}, {"id": "bad id", "commandLine": "x"}, TASK]
    response = client.post("/jobs/BadInputJob/addtaskcollection", {"value": tasks})
    assert response.status_code == 200
    results = {item["taskId"]: item for item in response.json()["value"]}
    assert results["good1"]["status"] == "success"
    assert (results["bad id"]["status"], results["bad id"]["error"]["code"]) == ("clienterror", "InvalidPropertyValue")
    assert (results["KeepMe"]["status"], results["KeepMe"]["error"]["code"]) == ("clienterror", "TaskExists")
    _unchanged(client)


def test_body_over_one_megabyte(client: BatchClient) -> None:
    big = json.dumps({"id": "huge", "commandLine": "x" * (1024 * 1024)}).encode()
    _error(client.request("POST", "/jobs/BadInputJob/tasks", content=big), 413, "RequestBodyTooLarge")
    assert client.get("/jobs/BadInputJob/tasks/huge").status_code == 404


def test_wrong_or_missing_signature(shared_stack: LocalStack) -> None:
    with BatchClient(shared_stack.url, shared_stack.account_name, "d3Jvbmcga2V5IGZvciB0aGlzIGFjY291bnQ=") as wrong:
        body = _error(wrong.get("/jobs"), 403, "AuthenticationFailed")
        assert "AuthenticationErrorDetail" in _values(body)
        _error(wrong.post("/jobs", {"id": "intruder", "poolInfo": {"poolId": "p"}}), 403, "AuthenticationFailed")
    unsigned = httpx.get(f"{shared_stack.url}/jobs", params={"api-version": "2025-06-01"})
    _error(unsigned, 403, "AuthenticationFailed")
    with shared_stack.client() as client:
        assert client.get("/jobs/intruder").status_code == 404


def test_missing_or_unknown_api_version(client: BatchClient) -> None:
    missing = client.request("GET", "/jobs", params={"api-version": ""})
    _error(missing, 400, "MissingRequiredQueryParameter")
    _error(client.get("/jobs", params={"api-version": "1999-01-01"}), 400, "UnsupportedRequestVersion")


def test_no_error_leaks_the_account_key(shared_stack: LocalStack, client: BatchClient) -> None:
    responses = [client.get("/jobs/NoSuchJob"), client.post("/jobs", {"id": "bad id"})]
    for response in responses:
        assert shared_stack.account_key not in response.text
