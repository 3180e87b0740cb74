"""Job request models."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, model_validator

from controller.domain.clock import parse_duration
from controller.domain.ids import key_of
from controller.schemas.common import (
    AllTasksComplete,
    ApplicationPackageReference,
    BatchId,
    BatchModel,
    ContainerSettings,
    DisableJobOption,
    DisplayName,
    Duration,
    NameValue,
    OutputFile,
    PoolLifetimeOption,
    ResourceFile,
    TaskConstraints,
    TaskFailureMode,
    UserIdentity,
    azure_error,
    names_are_unique,
)

MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
MAX_RELEASE_WALL_CLOCK = timedelta(minutes=15)
"""The longest a job release task may run."""


def check_scheduling_limits(priority: int | None, max_parallel_tasks: int | None) -> None:
    """A job's priority is within -1000..1000 and its maxParallelTasks is -1 or positive."""
    if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise azure_error("OutOfRangePriority", "priority must be between -1000 and 1000")
    if max_parallel_tasks is not None and max_parallel_tasks != -1 and max_parallel_tasks < 1:
        raise ValueError("maxParallelTasks must be -1 or greater than 0")


class JobManagerTask(BatchModel):
    """The task that runs the job: created with it, scheduled first, and (by default) ends it when it completes."""

    id: BatchId
    display_name: DisplayName | None = None
    command_line: str = Field(min_length=1)
    container_settings: ContainerSettings | None = None
    resource_files: list[ResourceFile] | None = None
    output_files: list[OutputFile] | None = None
    environment_settings: list[NameValue] | None = None
    constraints: TaskConstraints | None = None
    required_slots: int | None = Field(default=None, ge=1)
    kill_job_on_completion: bool | None = None
    user_identity: UserIdentity | None = None
    run_exclusive: bool | None = None
    application_package_references: list[ApplicationPackageReference] | None = None
    authentication_token_settings: dict[str, Any] | None = None
    allow_low_priority_node: bool | None = None

    MANAGER_ONLY: ClassVar[tuple[str, ...]] = (
        "killJobOnCompletion", "runExclusive", "authenticationTokenSettings", "allowLowPriorityNode"
    )  # fmt: skip

    def task_body(self) -> dict[str, Any]:
        """The fields a task has, as an add-task request body."""
        return {name: value for name, value in self.wire().items() if name not in self.MANAGER_ONLY}


class JobPreparationTask(BatchModel):
    """The task that runs on each node before the job's first task there."""

    id: BatchId | None = None
    command_line: str = Field(min_length=1)
    container_settings: ContainerSettings | None = None
    resource_files: list[ResourceFile] | None = None
    environment_settings: list[NameValue] | None = None
    constraints: TaskConstraints | None = None
    wait_for_success: bool | None = None
    user_identity: UserIdentity | None = None
    rerun_on_node_reboot_after_success: bool | None = None


class JobReleaseTask(BatchModel):
    """The task that runs, when the job ends, on each node where its preparation task ran."""

    id: BatchId | None = None
    command_line: str = Field(min_length=1)
    container_settings: ContainerSettings | None = None
    resource_files: list[ResourceFile] | None = None
    environment_settings: list[NameValue] | None = None
    max_wall_clock_time: Duration | None = None
    retention_time: Duration | None = None
    user_identity: UserIdentity | None = None

    @model_validator(mode="after")
    def _short(self) -> JobReleaseTask:
        limit = parse_duration(self.max_wall_clock_time) if self.max_wall_clock_time else None
        if limit is not None and limit > MAX_RELEASE_WALL_CLOCK:
            raise ValueError("a job release task may run for at most 15 minutes (maxWallClockTime PT15M)")
        return self


class JobConstraints(BatchModel):
    """Execution limits of a job."""

    max_wall_clock_time: Duration | None = None
    max_task_retry_count: int | None = Field(default=None, ge=-1)


class AutoPoolSpecification(BatchModel):
    """A pool the service creates for the job and deletes when the job completes (unless kept alive)."""

    auto_pool_id_prefix: str | None = Field(default=None, max_length=20, pattern=r"^[A-Za-z0-9_-]*$")
    pool_lifetime_option: PoolLifetimeOption
    keep_alive: bool | None = None
    pool: dict[str, Any]


class PoolInfo(BatchModel):
    """The pool a job runs on: an existing pool, or an auto pool specification."""

    pool_id: str | None = None
    auto_pool_specification: AutoPoolSpecification | None = None

    @model_validator(mode="after")
    def _one_pool(self) -> PoolInfo:
        if (self.pool_id is None) == (self.auto_pool_specification is None):
            raise ValueError("exactly one of poolId and autoPoolSpecification must be set")
        return self


class JobCreate(BatchModel):
    """Body of POST /jobs."""

    id: BatchId
    display_name: DisplayName | None = None
    uses_task_dependencies: bool | None = None
    priority: int | None = None
    allow_task_preemption: bool | None = None
    max_parallel_tasks: int | None = None
    constraints: JobConstraints | None = None
    job_manager_task: JobManagerTask | None = None
    job_preparation_task: JobPreparationTask | None = None
    job_release_task: JobReleaseTask | None = None
    common_environment_settings: list[NameValue] | None = None
    pool_info: PoolInfo
    on_all_tasks_complete: AllTasksComplete | None = None
    on_task_failure: TaskFailureMode | None = None
    network_configuration: dict[str, Any] | None = None
    metadata: list[NameValue] | None = None

    @model_validator(mode="after")
    def _limits(self) -> JobCreate:
        check_scheduling_limits(self.priority, self.max_parallel_tasks)
        names_are_unique(self.common_environment_settings, "environment setting")
        if self.job_release_task is not None and self.job_preparation_task is None:
            raise ValueError("a job release task needs a job preparation task")
        return self


class JobTerminate(BatchModel):
    """Body of POST /jobs/{jobId}/terminate (optional)."""

    terminate_reason: str | None = Field(default=None, max_length=1024)


class JobDisable(BatchModel):
    """Body of POST /jobs/{jobId}/disable: what happens to the job's running tasks."""

    disable_tasks: DisableJobOption


class JobUpdate(BatchModel):
    """Body of PATCH /jobs/{jobId} (omitted properties keep their values)."""

    priority: int | None = None
    allow_task_preemption: bool | None = None
    max_parallel_tasks: int | None = None
    constraints: JobConstraints | None = None
    pool_info: PoolInfo | None = None
    on_all_tasks_complete: AllTasksComplete | None = None
    metadata: list[NameValue] | None = None

    @model_validator(mode="after")
    def _limits(self) -> JobUpdate:
        check_scheduling_limits(self.priority, self.max_parallel_tasks)
        return self


class JobReplace(BatchModel):
    """Body of PUT /jobs/{jobId}: every updatable property; omitted ones take their defaults."""

    priority: int = 0
    allow_task_preemption: bool = False
    max_parallel_tasks: int = -1
    constraints: JobConstraints = Field(default_factory=JobConstraints)
    pool_info: PoolInfo
    on_all_tasks_complete: AllTasksComplete = "noaction"
    metadata: list[NameValue] = Field(default_factory=list)

    @model_validator(mode="after")
    def _limits(self) -> JobReplace:
        check_scheduling_limits(self.priority, self.max_parallel_tasks)
        return self

    def as_update(self, current: PoolInfo, current_pool_id: str) -> JobUpdate:
        """The patch that sets every property; the pool only when it is another one.

        A job on an auto pool keeps it: its specification, sent back as read, is no change.
        """
        same_auto = self.pool_info.auto_pool_specification is not None and current.auto_pool_specification is not None
        same_id = self.pool_info.pool_id is not None and key_of(self.pool_info.pool_id) == key_of(current_pool_id)
        same_pool = same_auto or same_id
        return JobUpdate(
            priority=self.priority,
            allow_task_preemption=self.allow_task_preemption,
            max_parallel_tasks=self.max_parallel_tasks,
            constraints=self.constraints,
            pool_info=None if same_pool else self.pool_info,
            on_all_tasks_complete=self.on_all_tasks_complete,
            metadata=self.metadata,
        )


class Schedule(BatchModel):
    """When a job schedule creates its jobs."""

    do_not_run_until: datetime | None = None
    do_not_run_after: datetime | None = None
    start_window: Duration | None = None
    recurrence_interval: Duration | None = None

    @model_validator(mode="after")
    def _at_least_a_minute(self) -> Schedule:
        for name, value in (("recurrenceInterval", self.recurrence_interval), ("startWindow", self.start_window)):
            duration = parse_duration(value) if value else None
            if duration is not None and duration < timedelta(minutes=1):
                raise ValueError(f"{name} must be at least one minute")
        return self


class JobScheduleCreate(BatchModel):
    """Body of POST /jobschedules."""

    id: BatchId
    display_name: DisplayName | None = None
    schedule: Schedule
    job_specification: dict[str, Any]
    metadata: list[NameValue] | None = None

    def job_body(self, job_id: str) -> dict[str, Any]:
        """The add-job body of one job this schedule creates."""
        return {**self.job_specification, "id": job_id}


class JobScheduleUpdate(BatchModel):
    """Body of PATCH /jobschedules/{jobScheduleId} (omitted properties keep their values)."""

    schedule: Schedule | None = None
    job_specification: dict[str, Any] | None = None
    metadata: list[NameValue] | None = None


class JobScheduleReplace(BatchModel):
    """Body of PUT /jobschedules/{jobScheduleId}: omitted properties take their defaults."""

    schedule: Schedule = Field(default_factory=Schedule)
    job_specification: dict[str, Any]
    metadata: list[NameValue] = Field(default_factory=list)

    def as_update(self) -> JobScheduleUpdate:
        """The patch that sets every property."""
        return JobScheduleUpdate(
            schedule=self.schedule, job_specification=self.job_specification, metadata=self.metadata
        )
