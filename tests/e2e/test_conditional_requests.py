"""Conditional headers: a read of an unchanged entity is 304, a write whose condition fails is 412 and changes
nothing, and two writers from the same read cannot both win."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.batch import BatchClient, models
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError

from batchyard.client import BatchClient as RestClient
from tests.support.batch import batch_client
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(shared_stack: LocalStack) -> Iterator[BatchClient]:
    client = batch_client(shared_stack)
    info = models.BatchPoolInfo(pool_id="no-such-pool")
    client.create_job(models.BatchJobCreateOptions(id="conditional", pool_info=info, priority=1))
    client.create_task("conditional", models.BatchTaskCreateOptions(id="kept", command_line="/bin/true"))
    yield client
    client.begin_delete_job("conditional", polling_interval=0)


def test_reading_an_unchanged_job_again_is_not_modified(client: BatchClient) -> None:
    etag = client.get_job("conditional").etag
    with pytest.raises(ResourceModifiedError) as unchanged:  # how the 15.x client reports a 304
        client.get_job("conditional", etag=etag, match_condition=MatchConditions.IfModified)
    assert unchanged.value.status_code == 304
    assert client.get_job("conditional", etag="0x1", match_condition=MatchConditions.IfModified).id == "conditional"


def test_a_write_from_a_stale_read_fails_and_changes_nothing(client: BatchClient) -> None:
    stale = client.get_job("conditional").etag
    client.update_job("conditional", models.BatchJobUpdateOptions(priority=2))
    with pytest.raises(ResourceModifiedError) as failed:
        update = models.BatchJobUpdateOptions(priority=3)
        client.update_job("conditional", update, etag=stale, match_condition=MatchConditions.IfNotModified)
    assert (failed.value.status_code, failed.value.error.code) == (412, "ConditionNotMet")
    current = client.get_job("conditional")
    assert current.priority == 2
    update = models.BatchJobUpdateOptions(priority=4)
    client.update_job("conditional", update, etag=current.etag, match_condition=MatchConditions.IfNotModified)
    assert client.get_job("conditional").priority == 4


def test_a_task_is_deleted_only_as_it_was_read(client: BatchClient) -> None:
    client.create_task("conditional", models.BatchTaskCreateOptions(id="doomed", command_line="/bin/true"))
    read = client.get_task("conditional", "doomed").etag
    constraints = models.BatchTaskConstraints(max_task_retry_count=2)
    client.replace_task("conditional", "doomed", models.BatchTask(constraints=constraints))
    with pytest.raises(ResourceModifiedError):
        client.delete_task("conditional", "doomed", etag=read, match_condition=MatchConditions.IfNotModified)
    latest = client.get_task("conditional", "doomed").etag
    client.delete_task("conditional", "doomed", etag=latest, match_condition=MatchConditions.IfNotModified)
    assert "doomed" not in {task.id for task in client.list_tasks("conditional")}


def test_dates_in_conditions(shared_stack: LocalStack) -> None:
    with shared_stack.client() as rest:
        job = rest.get("/jobs/conditional")
        modified = job.headers["last-modified"]
        unchanged = rest.request("GET", "/jobs/conditional", headers={"If-Modified-Since": modified})
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        assert unchanged.headers["etag"] == job.headers["etag"]
        past = "Mon, 01 Jan 2024 00:00:00 GMT"
        refused = rest.request("PATCH", "/jobs/conditional", {"priority": 9}, headers={"If-Unmodified-Since": past})
        assert (refused.status_code, refused.json()["code"]) == (412, "ConditionNotMet")
        malformed = rest.request("GET", "/jobs/conditional", headers={"If-Modified-Since": "yesterday"})
        assert (malformed.status_code, malformed.json()["code"]) == (400, "InvalidHeaderValue")
        assert rest.get("/jobs/conditional").json()["priority"] != 9


def test_two_writers_from_the_same_read_cannot_both_win(shared_stack: LocalStack, client: BatchClient) -> None:
    etag = client.get_job("conditional").etag

    def patch(priority: int) -> int:
        with RestClient(shared_stack.url, shared_stack.account_name, shared_stack.account_key) as rest:
            body = {"priority": priority}
            return rest.request("PATCH", "/jobs/conditional", body, headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(patch, range(10, 26)))
    assert sorted(statuses) == [200] + [412] * 15
    assert client.get_job("conditional").priority in range(10, 26)
