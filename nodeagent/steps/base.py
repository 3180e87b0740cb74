"""The Step protocol and the context every step of one attempt shares."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, Protocol

from nodeagent import process
from nodeagent.blob import BlobStore
from nodeagent.cgroups import NO_CGROUPS, CgroupSupport, ResourceUsage
from nodeagent.container import ContainerRuntime, ToolRunner, run_tool
from nodeagent.errors import StepError
from nodeagent.identity import IdentityResolver, RunAs
from nodeagent.layout import NodeLayout, TaskDirs
from nodeagent.messages import AttemptSpec, Coordinated, FailureCategory, GangState, JobPreparationSpec, TaskReport
from nodeagent.process import ProcessResult, ProcessSpec
from nodeagent.state import StepState


class Reporter(Protocol):
    """Delivers an attempt's report to the controller."""

    def deliver(self, attempt_id: str, report: TaskReport) -> object:
        """Send `report` for `attempt_id` (spooled until answered)."""


class Gang(Protocol):
    """The controller calls of a multi-instance task's instances (`nodeagent.client.ControllerClient`)."""

    def coordinated(self, attempt_id: str, result: Coordinated) -> None:
        """Tell the controller how this instance's coordination command ended."""

    def gang(self, attempt_id: str) -> GangState:
        """Ask whether every instance coordinated (the primary asks)."""


class JobPreparer(Protocol):
    """Runs a job's preparation task on this node once (`nodeagent.jobtasks.JobTasks`)."""

    def prepare(self, preparation: JobPreparationSpec, cancel: threading.Event) -> bool:
        """Make sure the preparation ran here; True when the attempt may run."""


@dataclass(frozen=True)
class RunDeps:
    """What the steps need from the agent around them."""

    blob: BlobStore
    reporter: Reporter
    agent_path: str
    kill_grace: float = 5.0
    run_process: Callable[[ProcessSpec], ProcessResult] = process.run
    on_process_start: Callable[[str, int], None] | None = None
    identities: IdentityResolver = field(default_factory=IdentityResolver)
    """Maps user identities to OS accounts; the default switches nothing (every task runs as the agent)."""
    cgroups: CgroupSupport = NO_CGROUPS
    """What `cgroups.detect` found at agent start; attempts get no cgroup by default."""
    container_runtime: ContainerRuntime | None = None
    """What `container.detect_runtime` found at agent start; container tasks fail without one."""
    run_tool: ToolRunner = run_tool
    """Runs helper commands with bytes on standard input (registry login)."""
    job_tasks: JobPreparer | None = None
    """Runs job preparation tasks; without it an attempt's preparation task is not run."""
    gang: Gang | None = None
    """Reaches the controller for multi-instance tasks; without it they cannot coordinate."""


@dataclass
class TaskContext:
    """State of one attempt as it moves through its steps."""

    spec: AttemptSpec
    layout: NodeLayout
    dirs: TaskDirs
    run_as: RunAs
    """`nobody` (or the agent's own user) until PrepareDirs resolves the attempt's identity."""
    deps: RunDeps
    state: StepState
    cancel: threading.Event = field(default_factory=threading.Event)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    env: dict[str, str] = field(default_factory=dict)
    process_started: bool = False
    process: ProcessResult | None = None
    usage: ResourceUsage | None = None
    failure: StepError | None = None
    abandoned: bool = False
    report: TaskReport | None = None
    coordination_group: int | None = None
    """Process group of a multi-instance task's coordination command, left running until the attempt ends."""
    coordinated: bool = False
    """This instance told the controller how its coordination ended."""

    @property
    def attempt_id(self) -> str:
        """Id of the attempt being run."""
        return self.spec.attempt_id

    @property
    def exit_code(self) -> int | None:
        """Exit code of the command (128 + signal number when a signal ended it); None if it never ran."""
        if self.process is None:
            return None
        if self.process.exit_code is not None:
            return self.process.exit_code
        return 128 + (self.process.signal or 0)

    def fail(self, error: StepError) -> None:
        """Record a failure; the first one recorded decides the outcome."""
        if self.failure is None:
            self.failure = error


class Step(Protocol):
    """One named stage of running an attempt."""

    name: ClassVar[str]
    category: ClassVar[FailureCategory]

    def run(self, ctx: TaskContext) -> None:
        """Do the step's work, raising StepError (or AttemptAbandoned) when it cannot."""
