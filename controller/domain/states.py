"""Azure Batch states, with values exactly as they appear in JSON."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """The states of a job."""

    ACTIVE = "active"
    DISABLING = "disabling"
    DISABLED = "disabled"
    ENABLING = "enabling"
    TERMINATING = "terminating"
    COMPLETED = "completed"
    DELETING = "deleting"


class TaskState(StrEnum):
    """The states of a task."""

    ACTIVE = "active"
    PREPARING = "preparing"
    RUNNING = "running"
    COMPLETED = "completed"


class NodeState(StrEnum):
    """The states of a compute node that this service uses."""

    IDLE = "idle"
    RUNNING = "running"
    UNKNOWN = "unknown"
    OFFLINE = "offline"
    UNUSABLE = "unusable"
    LEAVING_POOL = "leavingpool"


class AttemptState(StrEnum):
    """Internal: where one attempt of a task is."""

    OFFERED = "offered"
    RUNNING = "running"
    DONE = "done"


JOB_STATES_ACCEPTING_TASKS = frozenset({JobState.ACTIVE, JobState.DISABLING, JobState.DISABLED, JobState.ENABLING})
"""Job states in which tasks may be added."""

SCHEDULABLE_NODE_STATES = frozenset({NodeState.IDLE, NodeState.RUNNING})
"""Node states the scheduler places attempts on."""
