"""The wire contract between the controller and the node agents.

This is the only agent module the controller imports. It holds the Celery
dispatch payload, the bodies of the agent's HTTP calls to the controller
(claim, report, heartbeat), the signature both sides put on those calls and on
the agent's file server, the names they share (Celery task name, queue
names, URL paths), and the redaction of SAS signatures both sides apply.
It depends on pydantic and the standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RUN_ATTEMPT_TASK = "batchyard.run_attempt"
"""Celery task name the controller sends and the agent registers."""

SIGNATURE_HEADER = "x-batchyard-signature"
"""Header carrying `node_signature` on agent <-> controller calls."""

DATE_HEADER = "x-batchyard-date"
"""Header carrying the RFC-1123 date that the signature covers."""

MAX_CLOCK_SKEW_SECONDS = 900
"""Signed calls older or newer than this are refused (the same window as Shared Key)."""

AGENT_API_PREFIX = "/agent/v1"
"""Controller path prefix of the calls agents make."""

FILE_SERVER_PREFIX = "/v1/files"
"""Agent file-server path prefix; the rest is a path relative to the node root."""

FILE_MODE_HEADER = "x-batchyard-file-mode"
"""Agent file-server header: the file's mode as an octal string."""

CREATION_TIME_HEADER = "x-batchyard-creation-time"
"""Agent file-server header: the file's creation (change) time, RFC-1123."""

IS_DIRECTORY_HEADER = "x-batchyard-is-directory"
"""Agent file-server header: `true` when the path is a directory (GET/HEAD answer no body for it)."""


def node_queue(node_id: str) -> str:
    """Celery queue that one node consumes."""
    return f"batchyard.node.{node_id}"


def claims_path(node_id: str) -> str:
    """Controller path an agent posts to claim the attempts offered to it."""
    return f"{AGENT_API_PREFIX}/nodes/{node_id}/claims"


def reports_path(node_id: str) -> str:
    """Controller path an agent posts the outcomes of its attempts to."""
    return f"{AGENT_API_PREFIX}/nodes/{node_id}/reports"


def heartbeat_path(node_id: str) -> str:
    """Controller path an agent posts heartbeats to."""
    return f"{AGENT_API_PREFIX}/nodes/{node_id}/heartbeat"


def coordinated_path(attempt_id: str) -> str:
    """Controller path an instance of a multi-instance task posts its coordination result to."""
    return f"{AGENT_API_PREFIX}/attempts/{attempt_id}/coordinated"


def gang_path(attempt_id: str) -> str:
    """Controller path the primary instance asks whether every instance coordinated."""
    return f"{AGENT_API_PREFIX}/attempts/{attempt_id}/gang"


def job_task_path(node_id: str) -> str:
    """Controller path an agent posts its job preparation and release reports to."""
    return f"{AGENT_API_PREFIX}/nodes/{node_id}/jobtasks"


def node_signature(secret: str, method: str, path: str, date: str, body: bytes) -> str:
    """HMAC-SHA256 over the method, raw path, date and body digest, base64-encoded."""
    digest = hashlib.sha256(body).hexdigest()
    message = f"{method.upper()}\n{path}\n{date}\n{digest}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two signatures."""
    return hmac.compare_digest(expected.encode(), given.encode())


_SAS_SIGNATURE = re.compile(r"(?i)(sig=)[^&\s\"'<>]*")


def redact(text: str) -> str:
    """Replace the value of every `sig=` query parameter (a SAS signature) with `REDACTED`."""
    return _SAS_SIGNATURE.sub(r"\1REDACTED", text)


class RedactingFormatter(logging.Formatter):
    """Log formatter that redacts SAS signatures from the message and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact the whole text."""
        return redact(super().format(record))


class WireModel(BaseModel):
    """Base for messages: immutable, unknown fields ignored so versions can differ."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Offer(WireModel):
    """Attempt `attempt_id` of a task, offered to a node."""

    attempt_id: str
    job_id: str
    task_id: str


class Dispatch(WireModel):
    """The Celery payload: the attempts one scheduling pass offered to `node_id`."""

    node_id: str
    offers: list[Offer] = Field(min_length=1)


class ResourceFileSpec(WireModel):
    """One resource file to place under the task working directory."""

    http_url: str | None = None
    storage_container_url: str | None = None
    auto_storage_container_name: str | None = None
    blob_prefix: str | None = None
    file_path: str | None = None
    file_mode: str | None = None


class UploadHeader(WireModel):
    """An HTTP header set on the Put Blob request of an output file."""

    name: str
    value: str | None = None


UploadCondition = Literal["tasksuccess", "taskfailure", "taskcompletion"]


class OutputFileSpec(WireModel):
    """Files matching `file_pattern` uploaded to `container_url` under `path`."""

    file_pattern: str
    container_url: str
    path: str | None = None
    upload_headers: list[UploadHeader] = Field(default_factory=list)
    upload_condition: UploadCondition = "taskcompletion"


class UserIdentitySpec(WireModel):
    """Who the command runs as: a pool user account by name, or an auto user."""

    username: str | None = None
    auto_user_scope: Literal["task", "pool"] = "pool"
    elevation_level: Literal["nonadmin", "admin"] = "nonadmin"


class UserAccountSpec(WireModel):
    """A named user account of the pool, created on every node with these settings."""

    name: str
    password: str = Field(default="", repr=False)
    elevation_level: Literal["nonadmin", "admin"] = "nonadmin"
    uid: int | None = None
    gid: int | None = None
    ssh_private_key: str | None = Field(default=None, repr=False)


class ApplicationPackageSpec(WireModel):
    """An application package version to unpack under the node's applications directory."""

    application_id: str
    version: str
    is_default: bool = False
    package_url: str


BindSource = Literal["Shared", "Startup", "VfsMounts", "Task", "JobPrep", "Applications"]


class BindMountSpec(WireModel):
    """A node directory mounted into a task's container."""

    source: BindSource
    read_only: bool = False


class ContainerSpec(WireModel):
    """How to run a command inside a container instead of directly on the node."""

    image_name: str
    run_options: str = ""
    registry_server: str | None = None
    registry_username: str | None = None
    registry_password: str | None = Field(default=None, repr=False)
    working_directory: Literal["taskWorkingDirectory", "containerImageDefault"] = "taskWorkingDirectory"
    bind_mounts: list[BindMountSpec] | None = None
    """None mounts the whole node root; an empty list mounts nothing."""


class AttemptSpec(WireModel):
    """Everything an agent needs to run one attempt; the answer to a successful claim."""

    attempt_id: str
    job_id: str
    task_id: str
    pool_id: str
    node_id: str
    account_name: str
    account_url: str
    command_line: str
    environment: dict[str, str] = Field(default_factory=dict)
    resource_files: list[ResourceFileSpec] = Field(default_factory=list)
    output_files: list[OutputFileSpec] = Field(default_factory=list)
    user_identity: UserIdentitySpec = Field(default_factory=UserIdentitySpec)
    max_wall_clock_seconds: float | None = None
    retention_seconds: float | None = None
    required_slots: int = 1
    retry_count: int = 0
    user_account: UserAccountSpec | None = None
    """The pool account named by `user_identity.username`; None when the pool defines no such account."""
    application_packages: list[ApplicationPackageSpec] = Field(default_factory=list)
    container: ContainerSpec | None = None
    job_preparation_task_id: str | None = None
    """Set when the job has a preparation task: the agent exports AZ_BATCH_JOB_PREP_DIR for it."""
    job_preparation: JobPreparationSpec | None = None
    """The job's preparation task, which must have run on the node before this attempt's command."""
    multi_instance: MultiInstanceSpec | None = None
    """Set for one instance of a multi-instance task (the primary has subtask id 0)."""


class MultiInstanceSpec(WireModel):
    """One instance of a multi-instance task: which one, where the others run, what coordinates them."""

    subtask_id: int
    number_of_instances: int
    coordination_command_line: str
    common_resource_files: list[ResourceFileSpec] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    """The instances' node addresses, the primary's first."""
    master_port: int = 6000

    @property
    def is_primary(self) -> bool:
        """True for the instance that runs the task's command line."""
        return self.subtask_id == 0


class JobPreparationSpec(WireModel):
    """A job's preparation task: the task itself (as an attempt of its own) and how it gates the job's tasks."""

    task: AttemptSpec
    wait_for_success: bool = True
    rerun_on_node_reboot_after_success: bool = True
    max_task_retry_count: int = 0


AttemptSpec.model_rebuild()


class ClaimRequest(WireModel):
    """Body of a call about one attempt: the node that asks."""

    node_id: str


class ClaimBatch(WireModel):
    """Body of a claim: the offered attempts the node takes."""

    attempt_ids: list[str] = Field(min_length=1, max_length=1000)


class ClaimAnswer(WireModel):
    """The attempts the node now runs (their specs) and those it was refused (still or no longer offered)."""

    specs: list[AttemptSpec] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)


FailureCategory = Literal["usererror", "servererror"]


class FailureDetail(WireModel):
    """One name/value pair of a failure's details."""

    name: str
    value: str


class FailureInfo(WireModel):
    """Why an attempt failed, in Azure's `failureInfo` shape."""

    category: FailureCategory
    code: str
    message: str
    details: list[FailureDetail] = Field(default_factory=list)


AttemptOutcome = Literal[
    "exited", "preprocessing_error", "upload_error", "timed_out", "aborted", "job_preparation_failed"
]


class TaskStats(WireModel):
    """Resources one attempt used, from its cgroup where the node has one, else from the process."""

    user_cpu_seconds: float = 0.0
    kernel_cpu_seconds: float = 0.0
    wall_clock_seconds: float = 0.0
    peak_memory_bytes: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    read_ops: int = 0
    write_ops: int = 0


class TaskReport(WireModel):
    """The outcome of one attempt, sent by the agent that claimed it."""

    node_id: str
    outcome: AttemptOutcome
    exit_code: int | None = None
    start_time: datetime | None = None
    end_time: datetime
    failure: FailureInfo | None = None
    user_cpu_seconds: float = 0.0
    kernel_cpu_seconds: float = 0.0
    wall_clock_seconds: float = 0.0
    stats: TaskStats | None = None


class ReportAnswer(WireModel):
    """The controller's answer to a report: accepted, or refused as stale."""

    accepted: bool
    reason: str = ""


class AttemptReport(WireModel):
    """One attempt's report in a batch."""

    attempt_id: str
    report: TaskReport


class ReportBatch(WireModel):
    """Body of a report call: the outcomes of several attempts of one node.

    With `refill`, the controller places queued tasks on the slots the reports freed
    right away and claims them for the node: the answer carries their specs.
    """

    reports: list[AttemptReport] = Field(min_length=1, max_length=1000)
    refill: bool = False


class ReportBatchAnswer(WireModel):
    """The answer to each report, by attempt id, and the attempts claimed for the node to run next."""

    answers: dict[str, ReportAnswer] = Field(default_factory=dict)
    specs: list[AttemptSpec] = Field(default_factory=list)


class StartTaskSpec(WireModel):
    """The pool's start task: runs when a node joins the pool or its agent restarts."""

    command_line: str
    environment: dict[str, str] = Field(default_factory=dict)
    resource_files: list[ResourceFileSpec] = Field(default_factory=list)
    user_identity: UserIdentitySpec = Field(default_factory=UserIdentitySpec)
    user_account: UserAccountSpec | None = None
    max_task_retry_count: int = 0
    wait_for_success: bool = True
    container: ContainerSpec | None = None


class PoolConfig(WireModel):
    """What every node of a pool applies: its user accounts, start task and application packages."""

    pool_id: str
    version: str
    """Changes whenever any of the rest changes; the node re-applies the config when it does."""
    account_name: str
    account_url: str
    user_accounts: list[UserAccountSpec] = Field(default_factory=list)
    start_task: StartTaskSpec | None = None
    application_packages: list[ApplicationPackageSpec] = Field(default_factory=list)


StartTaskState = Literal["running", "completed"]


class StartTaskReport(WireModel):
    """How the node's start task went (Azure's startTaskInfo)."""

    state: StartTaskState
    start_time: datetime
    end_time: datetime | None = None
    exit_code: int | None = None
    retry_count: int = 0
    last_retry_time: datetime | None = None
    result: Literal["success", "failure"] | None = None
    failure: FailureInfo | None = None


NodeReadiness = Literal["starting", "waitingforstarttask", "starttaskfailed", "ready"]


class NodeHeartbeat(WireModel):
    """Periodic liveness and capacity report of one node; the first one registers it."""

    node_id: str
    pool_id: str
    task_slots: int
    running_attempts: list[str] = Field(default_factory=list)
    file_server_url: str
    ip_address: str = "127.0.0.1"
    agent_version: str = "0"
    boot_time: datetime | None = None
    readiness: NodeReadiness = "ready"
    """`ready` once the pool config is applied (and the start task succeeded, when it must)."""
    pool_config_version: str = ""
    start_task: StartTaskReport | None = None
    container_runtime: str | None = None
    """`docker` or `podman` when the node can run container tasks."""
    claims_in_flight: bool = False
    """A claim call was unanswered when this heartbeat was built: `running_attempts` may lack its attempts."""


NodeCommand = Literal["reboot", "leave"]
"""`reboot`: stop every attempt and restart the agent process (the start task runs again).
`leave`: the node was removed from its pool; stop every attempt and run nothing more."""


class HeartbeatAnswer(WireModel):
    """The controller's answer: attempts to stop, the pool config when it changed, the lease length, a command."""

    stale_attempts: list[str] = Field(default_factory=list)
    pool_config: PoolConfig | None = None
    lease_seconds: float = 30.0
    """How long a running attempt's lease lasts without a heartbeat: past it the agent fences itself."""
    command: NodeCommand | None = None
    job_releases: list[AttemptSpec] = Field(default_factory=list)
    """Release tasks of ended jobs to run on this node (each until the node reported it)."""


class Coordinated(WireModel):
    """How an instance's coordination command ended."""

    node_id: str
    exit_code: int | None = None
    start_time: datetime
    end_time: datetime
    failure: FailureInfo | None = None


class GangState(WireModel):
    """Whether every instance of a multi-instance task coordinated: `waiting`, `ready` or `failed`."""

    state: Literal["waiting", "ready", "failed"]
    failure: FailureInfo | None = None


JobTaskKind = Literal["preparation", "release"]


class JobTaskReport(WireModel):
    """The state of a job's preparation or release task on one node."""

    job_id: str
    node_id: str
    kind: JobTaskKind
    state: Literal["running", "completed"]
    start_time: datetime
    end_time: datetime | None = None
    exit_code: int | None = None
    failure: FailureInfo | None = None
    retry_count: int = 0
    last_retry_time: datetime | None = None
    result: Literal["success", "failure"] | None = None
    task_root_directory: str = ""
    """The task's directory relative to the node root."""

    @classmethod
    def running(cls, task: AttemptSpec, kind: JobTaskKind, started: datetime, root: str) -> JobTaskReport:
        """The report of a job task that just started."""
        return cls(
            job_id=task.job_id,
            node_id=task.node_id,
            kind=kind,
            state="running",
            start_time=started,
            task_root_directory=root,
        )


LIST_QUERY = "list"
"""File-server query flag (`?list=1`): answer a directory with a `FileListing` instead of bytes."""

RECURSIVE_QUERY = "recursive"
"""File-server query flag (`?recursive=true`): list or delete the whole tree below a directory."""


class FileEntry(WireModel):
    """One file or directory below the node root, as the file server lists it."""

    path: str
    """Relative to the node root, `/`-separated."""
    is_directory: bool
    size: int
    modified: datetime
    created: datetime
    mode: str
    """Permission bits as four octal digits, e.g. `0644`."""


class FileListing(WireModel):
    """The answer to a listing: the entries below the directory asked for (not the directory itself)."""

    entries: list[FileEntry] = Field(default_factory=list)
