"""Task request models."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from controller.schemas.common import (
    ApplicationPackageReference,
    BatchId,
    BatchModel,
    ContainerSettings,
    DependencyAction,
    DisplayName,
    JobAction,
    NameValue,
    OutputFile,
    ResourceFile,
    TaskConstraints,
    UserIdentity,
    names_are_unique,
)


class ExitOptions(BatchModel):
    """What a task's exit means for its job and its dependents."""

    job_action: JobAction | None = None
    dependency_action: DependencyAction | None = None


class ExitCodeMapping(BatchModel):
    """Exit options for one exit code."""

    code: int
    exit_options: ExitOptions


class ExitCodeRangeMapping(BatchModel):
    """Exit options for an inclusive range of exit codes."""

    start: int
    end: int
    exit_options: ExitOptions


class ExitConditions(BatchModel):
    """How the service treats each way a task can end."""

    exit_codes: list[ExitCodeMapping] | None = None
    exit_code_ranges: list[ExitCodeRangeMapping] | None = None
    pre_processing_error: ExitOptions | None = None
    file_upload_error: ExitOptions | None = None
    default: ExitOptions | None = None

    def all_options(self) -> list[ExitOptions]:
        """Every ExitOptions object given."""
        mapped = [mapping.exit_options for mapping in self.exit_codes or []]
        mapped += [mapping.exit_options for mapping in self.exit_code_ranges or []]
        special = [self.pre_processing_error, self.file_upload_error, self.default]
        return [*mapped, *(options for options in special if options is not None)]


class AffinityInfo(BatchModel):
    """A soft hint for the node to run on."""

    affinity_id: str


class MultiInstanceSettings(BatchModel):
    """A task that runs on several nodes at once."""

    number_of_instances: int | None = Field(default=None, ge=1)
    coordination_command_line: str
    common_resource_files: list[ResourceFile] | None = None


class TaskIdRange(BatchModel):
    """An inclusive range of integer task ids."""

    start: int
    end: int


class TaskDependencies(BatchModel):
    """Tasks that must complete before this one runs."""

    task_ids: list[str] | None = None
    task_id_ranges: list[TaskIdRange] | None = None


class TaskCreate(BatchModel):
    """Body of POST /jobs/{jobId}/tasks and each item of addtaskcollection."""

    id: BatchId
    display_name: DisplayName | None = None
    command_line: str = Field(min_length=1)
    exit_conditions: ExitConditions | None = None
    container_settings: ContainerSettings | None = None
    resource_files: list[ResourceFile] | None = None
    output_files: list[OutputFile] | None = None
    environment_settings: list[NameValue] | None = None
    affinity_info: AffinityInfo | None = None
    constraints: TaskConstraints | None = None
    required_slots: int | None = Field(default=None, ge=1)
    user_identity: UserIdentity | None = None
    multi_instance_settings: MultiInstanceSettings | None = None
    depends_on: TaskDependencies | None = None
    application_package_references: list[ApplicationPackageReference] | None = None

    @model_validator(mode="after")
    def _unique_environment(self) -> TaskCreate:
        names_are_unique(self.environment_settings, "environment setting")
        return self


class TaskCollection(BatchModel):
    """Body of POST /jobs/{jobId}/addtaskcollection (items validated one by one)."""

    value: list[dict[str, Any]]


class TaskReplace(BatchModel):
    """Body of PUT /jobs/{jobId}/tasks/{taskId}: the task's constraints, its only updatable property."""

    constraints: TaskConstraints | None = None
