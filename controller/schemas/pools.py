"""Pool request models."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, model_validator

from controller.schemas.common import (
    ApplicationPackageReference,
    BatchId,
    BatchModel,
    ContainerSettings,
    DisplayName,
    Duration,
    JobDefaultOrder,
    NameValue,
    NodeFillType,
    ResourceFile,
    UserIdentity,
    ci_enum,
)


class TaskSchedulingPolicy(BatchModel):
    """How tasks are spread over the pool's nodes."""

    node_fill_type: NodeFillType
    job_default_order: JobDefaultOrder | None = None


class StartTask(BatchModel):
    """The task each node runs when it joins the pool or restarts."""

    command_line: str = Field(min_length=1)
    container_settings: ContainerSettings | None = None
    resource_files: list[ResourceFile] | None = None
    environment_settings: list[NameValue] | None = None
    user_identity: UserIdentity | None = None
    max_task_retry_count: int | None = Field(default=None, ge=-1)
    wait_for_success: bool | None = None


class PoolCreate(BatchModel):
    """Body of POST /pools."""

    id: BatchId
    display_name: DisplayName | None = None
    vm_size: str = Field(min_length=1)
    virtual_machine_configuration: dict[str, Any] | None = None
    resize_timeout: Duration | None = None
    target_dedicated_nodes: int | None = Field(default=None, ge=0)
    target_low_priority_nodes: int | None = Field(default=None, ge=0)
    enable_auto_scale: bool | None = None
    auto_scale_formula: str | None = Field(default=None, max_length=8192)
    auto_scale_evaluation_interval: Duration | None = None
    enable_inter_node_communication: bool | None = None
    network_configuration: dict[str, Any] | None = None
    start_task: StartTask | None = None
    application_package_references: list[dict[str, Any]] | None = None
    task_slots_per_node: int | None = Field(default=None, ge=1, le=256)
    task_scheduling_policy: TaskSchedulingPolicy | None = None
    user_accounts: list[dict[str, Any]] | None = None
    metadata: list[NameValue] | None = None
    mount_configuration: list[dict[str, Any]] | None = None
    upgrade_policy: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        """`maxTasksPerNode`, the name API versions before 2020-09 gave `taskSlotsPerNode`, is read as it."""
        if isinstance(data, dict) and "maxTasksPerNode" in data and "taskSlotsPerNode" not in data:
            data = {**data, "taskSlotsPerNode": data["maxTasksPerNode"]}
            del data["maxTasksPerNode"]
        return data


class PoolUpdate(BatchModel):
    """Body of PATCH /pools/{poolId}: the properties given replace the pool's, the others stay."""

    start_task: StartTask | None = None
    application_package_references: list[ApplicationPackageReference] | None = None
    metadata: list[NameValue] | None = None
    target_node_communication_mode: str | None = None
    display_name: DisplayName | None = None
    vm_size: str | None = Field(default=None, min_length=1)
    enable_inter_node_communication: bool | None = None
    virtual_machine_configuration: dict[str, Any] | None = None
    task_slots_per_node: int | None = Field(default=None, ge=1, le=256)
    task_scheduling_policy: TaskSchedulingPolicy | None = None
    network_configuration: dict[str, Any] | None = None
    user_accounts: list[dict[str, Any]] | None = None
    mount_configuration: list[dict[str, Any]] | None = None
    upgrade_policy: dict[str, Any] | None = None

    ANYTIME: ClassVar[frozenset[str]] = frozenset(
        {"startTask", "applicationPackageReferences", "metadata", "targetNodeCommunicationMode"}
    )

    def changes(self) -> dict[str, Any]:
        """The properties given, by wire name."""
        return self.wire()

    def needs_empty_pool(self) -> list[str]:
        """The properties given that a pool takes only while it has no nodes."""
        return sorted(name for name in self.wire() if name not in self.ANYTIME)


class PoolReplace(BatchModel):
    """Body of POST /pools/{poolId}/updateproperties: start task, packages and metadata replaced whole."""

    start_task: StartTask | None = None
    certificate_references: list[dict[str, Any]] | None = None
    application_package_references: list[ApplicationPackageReference]
    metadata: list[NameValue]
    target_node_communication_mode: str | None = None

    def changes(self) -> dict[str, Any]:
        """The new values by wire name; None removes a property (an omitted start task is removed)."""
        given = self.wire()
        return {
            "startTask": given.get("startTask"),
            "applicationPackageReferences": given["applicationPackageReferences"],
            "metadata": given["metadata"],
            "targetNodeCommunicationMode": given.get("targetNodeCommunicationMode"),
        }

    def needs_empty_pool(self) -> list[str]:
        """None of these properties needs the pool to be empty."""
        return []


DeallocationOption = Annotated[str, BeforeValidator(ci_enum("requeue", "terminate", "taskcompletion", "retaineddata"))]


class PoolResize(BatchModel):
    """Body of POST /pools/{poolId}/resize."""

    target_dedicated_nodes: int | None = Field(default=None, ge=0)
    target_low_priority_nodes: int | None = Field(default=None, ge=0)
    resize_timeout: Duration | None = None
    node_deallocation_option: DeallocationOption | None = None


class NodeRemove(BatchModel):
    """Body of POST /pools/{poolId}/removenodes."""

    node_list: list[str] = Field(min_length=1, max_length=100)
    resize_timeout: Duration | None = None
    node_deallocation_option: DeallocationOption | None = None


class NodeDisableScheduling(BatchModel):
    """Body of POST .../nodes/{nodeId}/disablescheduling."""

    node_disable_scheduling_option: (
        Annotated[str, BeforeValidator(ci_enum("requeue", "terminate", "taskcompletion"))] | None
    ) = None


class NodeReboot(BatchModel):
    """Body of POST .../nodes/{nodeId}/reboot."""

    node_reboot_option: DeallocationOption | None = None
