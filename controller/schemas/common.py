"""Request models shared by jobs, tasks and pools: camelCase on the wire, enums case-insensitive."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from controller.domain.clock import parse_duration
from controller.domain.ids import id_problem


def azure_error(code: str, message: str) -> PydanticCustomError:
    """A validation error that carries its own Azure error code."""
    return PydanticCustomError("azure_code", message, {"code": code})


def ci_enum(*values: str) -> Callable[[Any], Any]:
    """A before-validator mapping any casing of `values` to the canonical spelling."""
    canonical = {value.lower(): value for value in values}

    def convert(raw: Any) -> Any:
        if isinstance(raw, str) and raw.lower() in canonical:
            return canonical[raw.lower()]
        raise ValueError(f"must be one of: {', '.join(values)}")

    return convert


UploadConditionValue = Annotated[str, BeforeValidator(ci_enum("tasksuccess", "taskfailure", "taskcompletion"))]
AutoUserScope = Annotated[str, BeforeValidator(ci_enum("task", "pool"))]
ElevationLevel = Annotated[str, BeforeValidator(ci_enum("nonadmin", "admin"))]
BindSource = Annotated[
    str, BeforeValidator(ci_enum("Shared", "Startup", "VfsMounts", "Task", "JobPrep", "Applications"))
]
ContainerWorkingDirectory = Annotated[str, BeforeValidator(ci_enum("taskWorkingDirectory", "containerImageDefault"))]
JobAction = Annotated[str, BeforeValidator(ci_enum("none", "disable", "terminate"))]
DependencyAction = Annotated[str, BeforeValidator(ci_enum("satisfy", "block"))]
NodeFillType = Annotated[str, BeforeValidator(ci_enum("spread", "pack"))]
JobDefaultOrder = Annotated[str, BeforeValidator(ci_enum("none", "creationtime"))]
AllTasksComplete = Annotated[str, BeforeValidator(ci_enum("noaction", "terminatejob"))]
TaskFailureMode = Annotated[str, BeforeValidator(ci_enum("noaction", "performexitoptionsjobaction"))]
DisableJobOption = Annotated[str, BeforeValidator(ci_enum("requeue", "terminate", "wait"))]
PoolLifetimeOption = Annotated[str, BeforeValidator(ci_enum("job", "jobschedule"))]


def _valid_id(value: str) -> str:
    problem = id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _valid_duration(value: str) -> str:
    if parse_duration(value) is None:
        raise ValueError("must be an ISO-8601 duration such as PT1H")
    return value


def _relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError("must be a relative path that stays inside the task working directory")
    return value


BatchId = Annotated[str, AfterValidator(_valid_id)]
Duration = Annotated[str, AfterValidator(_valid_duration)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
DisplayName = Annotated[str, Field(max_length=1024)]


class BatchModel(BaseModel):
    """camelCase on the wire, unknown properties ignored, names usable from Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The JSON form, without properties that were not given."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class NameValue(BatchModel):
    """An environment setting or metadata item."""

    name: str
    value: str | None = None


class IdentityReference(BatchModel):
    """A user-assigned identity reference (accepted and stored)."""

    resource_id: str | None = None


class ResourceFile(BatchModel):
    """A file to download to the node before the command runs."""

    auto_storage_container_name: str | None = None
    storage_container_url: str | None = None
    http_url: str | None = None
    blob_prefix: str | None = None
    file_path: RelativePath | None = None
    file_mode: str | None = Field(default=None, pattern=r"^0?[0-7]{3,4}$")
    identity_reference: IdentityReference | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_blob_source(cls, data: Any) -> Any:
        """`blobSource`, the name API versions before 2018-12 gave `httpUrl`, is read as `httpUrl`."""
        if isinstance(data, dict) and "blobSource" in data and "httpUrl" not in data:
            data = {**data, "httpUrl": data["blobSource"]}
            del data["blobSource"]
        return data

    @model_validator(mode="after")
    def _one_source(self) -> ResourceFile:
        sources = [self.auto_storage_container_name, self.storage_container_url, self.http_url]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("exactly one of autoStorageContainerName, storageContainerUrl and httpUrl must be set")
        if self.http_url is not None and not self.file_path:
            raise ValueError("filePath is required with httpUrl")
        if self.blob_prefix is not None and self.http_url is not None:
            raise ValueError("blobPrefix is valid only with a container source")
        return self


class UploadHeader(BatchModel):
    """An HTTP header for the Put Blob request of an output file."""

    name: str
    value: str | None = None


class ContainerDestination(BatchModel):
    """Where output files go in blob storage."""

    container_url: str
    path: str | None = None
    identity_reference: IdentityReference | None = None
    upload_headers: list[UploadHeader] | None = None


class OutputFileDestination(BatchModel):
    """The destination of an output file."""

    container: ContainerDestination


class UploadOptions(BatchModel):
    """When an output file is uploaded."""

    upload_condition: UploadConditionValue


class OutputFile(BatchModel):
    """Files to upload after the command exits."""

    file_pattern: str = Field(min_length=1)
    destination: OutputFileDestination
    upload_options: UploadOptions


class AutoUser(BatchModel):
    """An automatically created user account."""

    scope: AutoUserScope | None = None
    elevation_level: ElevationLevel | None = None


class UserIdentity(BatchModel):
    """The identity a task runs as: a named pool user or an auto user."""

    username: str | None = Field(default=None, alias="username")
    auto_user: AutoUser | None = None

    @model_validator(mode="after")
    def _not_both(self) -> UserIdentity:
        if self.username is not None and self.auto_user is not None:
            raise ValueError("username and autoUser are mutually exclusive")
        return self


class TaskConstraints(BatchModel):
    """Execution limits of a task."""

    max_wall_clock_time: Duration | None = None
    retention_time: Duration | None = None
    max_task_retry_count: int | None = Field(default=None, ge=-1)


class ApplicationPackageReference(BatchModel):
    """An application package to deploy before the task runs."""

    application_id: str
    version: str | None = None


class BindMount(BatchModel):
    """A node directory mounted into a task's container."""

    source: BindSource
    is_read_only: bool | None = None


class ContainerSettings(BatchModel):
    """How to run the task in a container."""

    image_name: str = Field(min_length=1)
    container_run_options: str | None = None
    registry: dict[str, Any] | None = None
    working_directory: ContainerWorkingDirectory | None = None
    container_host_batch_bind_mounts: list[BindMount] | None = None

    @model_validator(mode="after")
    def _unique_sources(self) -> ContainerSettings:
        sources = [mount.source for mount in self.container_host_batch_bind_mounts or []]
        if len(sources) != len(set(sources)):
            raise ValueError("each containerHostBatchBindMounts source may be mounted only once")
        return self


def names_are_unique(items: Iterable[NameValue] | None, what: str) -> None:
    """Raise when two items share a name."""
    seen: set[str] = set()
    for item in items or ():
        if item.name in seen:
            raise ValueError(f"{what} '{item.name}' is given more than once")
        seen.add(item.name)
