"""Job schedules through the official SDK: jobs made from a specification, one at a time, and their pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.batch import BatchClient, models
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.support.batch import batch_client, until
from tests.support.stack import LocalStack

pytestmark = pytest.mark.e2e

LOCAL = models.BatchPoolInfo(pool_id="local")


def _gone(client: BatchClient, pool_id: str) -> bool:
    """True once the pool is deleted (the SDK raises on a 404, even from pool_exists)."""
    try:
        client.get_pool(pool_id)
    except ResourceNotFoundError:
        return True
    return False


def test_a_schedule_without_recurrence_runs_one_job_and_completes(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    manager = models.BatchJobManagerTask(id="manager", command_line="/bin/sh -c 'echo $AZ_BATCH_JOB_ID'")
    specification = models.BatchJobSpecification(pool_info=LOCAL, job_manager_task=manager)
    schedule = models.BatchJobScheduleConfiguration()
    client.create_job_schedule(
        models.BatchJobScheduleCreateOptions(id="nightly", schedule=schedule, job_specification=specification)
    )
    until("the schedule to complete", lambda: client.get_job_schedule("nightly").state == "completed")
    jobs = list(client.list_jobs_from_schedule("nightly"))
    assert [job.id for job in jobs] == ["nightly:job-1"]
    assert jobs[0].execution_info.termination_reason == "JMComplete"
    out = b"".join(client.download_task_file("nightly:job-1", "manager", "stdout.txt")).decode()
    assert out.strip() == "nightly:job-1"
    assert client.get_job_schedule("nightly").execution_info.recent_job.id == "nightly:job-1"


def test_terminating_a_schedule_ends_its_job_and_its_auto_pool(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    auto = models.BatchAutoPoolSpecification(
        auto_pool_id_prefix="sched",
        pool_lifetime_option="jobschedule",
        pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3", target_dedicated_nodes=0),
    )
    specification = models.BatchJobSpecification(pool_info=models.BatchPoolInfo(auto_pool_specification=auto))
    client.create_job_schedule(
        models.BatchJobScheduleCreateOptions(
            id="pooled", schedule=models.BatchJobScheduleConfiguration(), job_specification=specification
        )
    )
    until("the first job", lambda: any(True for _ in client.list_jobs_from_schedule("pooled")))
    job = client.get_job("pooled:job-1")
    pool_id = job.execution_info.pool_id
    assert pool_id.startswith("sched_")
    assert client.get_pool(pool_id).state == "active"
    client.begin_terminate_job_schedule("pooled", polling_interval=0).result()
    assert client.get_job_schedule("pooled").state == "completed"
    until("the job to end", lambda: client.get_job("pooled:job-1").state == "completed")
    assert client.get_job("pooled:job-1").execution_info.termination_reason == "TerminateJobSchedule"
    until("the schedule's pool to go", lambda: _gone(client, pool_id))


def test_disable_enable_delete_and_a_job_that_asks_for_a_schedule_pool(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    later = models.BatchJobScheduleConfiguration(do_not_run_until=datetime.now(UTC) + timedelta(hours=1))
    specification = models.BatchJobSpecification(pool_info=LOCAL)
    client.create_job_schedule(
        models.BatchJobScheduleCreateOptions(id="later", schedule=later, job_specification=specification)
    )
    assert client.get_job_schedule("later").execution_info.next_run_time > datetime.now(UTC)
    client.disable_job_schedule("later")
    assert client.get_job_schedule("later").state == "disabled"
    client.enable_job_schedule("later")
    assert client.get_job_schedule("later").state == "active"
    assert list(client.list_jobs_from_schedule("later")) == []
    client.begin_delete_job_schedule("later", polling_interval=0).result()
    with pytest.raises(ResourceNotFoundError):
        client.get_job_schedule("later")
    # A plain job cannot ask for a pool that lives as long as a schedule
    auto = models.BatchAutoPoolSpecification(
        pool_lifetime_option="jobschedule", pool=models.BatchPoolSpecification(vm_size="standard_d2s_v3")
    )
    options = models.BatchJobCreateOptions(
        id="not-scheduled", pool_info=models.BatchPoolInfo(auto_pool_specification=auto)
    )
    with pytest.raises(HttpResponseError) as refused:
        client.create_job(options)
    assert (refused.value.status_code, refused.value.error.code) == (400, "InvalidPropertyValue")


def test_changing_a_schedule_retimes_it_and_later_jobs_follow_the_new_specification(shared_stack: LocalStack) -> None:
    client = batch_client(shared_stack)
    # Given a schedule that would first run tomorrow, with metadata
    tomorrow = models.BatchJobScheduleConfiguration(
        do_not_run_until=datetime.now(UTC) + timedelta(days=1), recurrence_interval=timedelta(hours=1)
    )
    first = models.BatchJobSpecification(pool_info=LOCAL, priority=10)
    owner = [models.BatchMetadataItem(name="owner", value="nightly-team")]
    client.create_job_schedule(
        models.BatchJobScheduleCreateOptions(id="retimed", schedule=tomorrow, job_specification=first, metadata=owner)
    )
    assert not list(client.list_jobs_from_schedule("retimed"))
    # A specification that would not make a valid job is refused
    with pytest.raises(HttpResponseError) as invalid:
        client.update_job_schedule(
            "retimed", models.BatchJobScheduleUpdateOptions(job_specification=models.BatchJobSpecification())
        )
    assert (invalid.value.status_code, invalid.value.error.code) == (400, "MissingRequiredProperty")
    # When a patch drops its start time, it runs now and keeps what the patch left out
    hourly = models.BatchJobScheduleConfiguration(recurrence_interval=timedelta(hours=1))
    client.update_job_schedule("retimed", models.BatchJobScheduleUpdateOptions(schedule=hourly))
    until("the first job", lambda: any(True for _ in client.list_jobs_from_schedule("retimed")))
    patched = client.get_job_schedule("retimed")
    assert [(m.name, m.value) for m in patched.metadata or []] == [("owner", "nightly-team")]
    assert patched.execution_info.next_run_time > datetime.now(UTC) + timedelta(minutes=55)
    # And a replacement (one more run, a new priority, no metadata) applies to the job made after it
    once_more = models.BatchJobScheduleConfiguration(do_not_run_until=datetime.now(UTC) + timedelta(seconds=1))
    second = models.BatchJobSpecification(pool_info=LOCAL, priority=40)
    client.replace_job_schedule("retimed", models.BatchJobSchedule(schedule=once_more, job_specification=second))
    assert client.get_job_schedule("retimed").metadata is None
    assert client.get_job("retimed:job-1").priority == 10
    client.begin_terminate_job("retimed:job-1", {"terminateReason": "retimed"}, polling_interval=0).result()
    until("the second job", lambda: len(list(client.list_jobs_from_schedule("retimed"))) == 2)
    assert client.get_job("retimed:job-2").priority == 40
    # After which, without a recurrence, it completes
    client.begin_terminate_job("retimed:job-2", {"terminateReason": "retimed"}, polling_interval=0).result()
    until("the schedule to complete", lambda: client.get_job_schedule("retimed").state == "completed")
    # A completed schedule no longer changes
    with pytest.raises(HttpResponseError) as ended:
        client.update_job_schedule("retimed", models.BatchJobScheduleUpdateOptions(schedule=hourly))
    assert (ended.value.status_code, ended.value.error.code) == (409, "JobScheduleCompleted")
