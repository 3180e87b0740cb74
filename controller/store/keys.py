"""Every Redis key the controller uses, built from one configurable prefix.

Lua scripts never build keys: they get them as KEYS or read them from fields
that these functions filled in (queue members and attempt records hold full keys).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment prefix."""

    prefix: str

    def seq(self) -> str:
        """Counter giving every created entity its creation order."""
        return f"{self.prefix}:seq"

    def jobs(self) -> str:
        """Sorted set (lexical) of job keys."""
        return f"{self.prefix}:jobs"

    def job(self, job_key: str) -> str:
        """Hash of one job."""
        return f"{self.prefix}:job:{job_key}"

    def job_tasks(self, job_key: str) -> str:
        """Sorted set (lexical) of one job's task keys."""
        return f"{self.prefix}:job:{job_key}:tasks"

    def job_queue(self, job_key: str) -> str:
        """Sorted set of task hash keys waiting for a node, scored by arrival order."""
        return f"{self.prefix}:job:{job_key}:queue"

    def job_attempts(self, job_key: str) -> str:
        """Set of the job's live (offered or running) attempt hash keys."""
        return f"{self.prefix}:job:{job_key}:attempts"

    def job_dependents(self, job_key: str) -> str:
        """Prefix of the sets of tasks waiting for a dependency name (a task key, or `#n` for integer ids)."""
        return f"{self.prefix}:job:{job_key}:dep:"

    def job_dependency_states(self, job_key: str) -> str:
        """Hash of dependency name -> `satisfied` | `blocked`, once the task(s) of that name completed."""
        return f"{self.prefix}:job:{job_key}:depstate"

    def job_prep_states(self, job_key: str) -> str:
        """Hash of node id -> `running` | `success` | `failure` of the job's preparation task there.

        The Lua scripts derive it from the job's hash key: `<job hash key>:prepstate`."""
        return f"{self.job(job_key)}:prepstate"

    def job_prep_failed(self, job_key: str) -> str:
        """Set of node ids where the job's preparation failed (its tasks are not placed there)."""
        return f"{self.job(job_key)}:prepfailed"

    def job_prep_info(self, job_key: str) -> str:
        """Hash of node id -> the preparation task's executionInfo there (JSON, wire names)."""
        return f"{self.job(job_key)}:jobprep"

    def job_release_info(self, job_key: str) -> str:
        """Hash of node id -> the release task's executionInfo there (JSON, wire names)."""
        return f"{self.job(job_key)}:jobrelease"

    def job_releasing(self, job_key: str) -> str:
        """Set of node ids whose release of the (terminating) job is still to come."""
        return f"{self.job(job_key)}:releasing"

    def auto_pools(self) -> str:
        """Hash of auto pool key -> JSON {"job": job key, "keepAlive": bool}."""
        return f"{self.prefix}:pools:auto"

    def terminating_jobs(self) -> str:
        """Set of the keys of jobs waiting for their release tasks before they complete."""
        return f"{self.prefix}:jobs:terminating"

    def node_releases(self, node_id: str) -> str:
        """Hash of job key -> the release task (AttemptSpec JSON) the node is to run."""
        return f"{self.prefix}:node:{node_id}:releases"

    def job_task_prefix(self, job_key: str) -> str:
        """What a task key is appended to for its hash key."""
        return f"{self.prefix}:task:{job_key}:"

    def job_schedules(self) -> str:
        """Lexical index of job schedule keys."""
        return f"{self.prefix}:jobschedules"

    def job_schedule(self, schedule_key: str) -> str:
        """Hash of one job schedule."""
        return f"{self.prefix}:jobschedule:{schedule_key}"

    def schedule_jobs(self, schedule_key: str) -> str:
        """Lexical index of the keys of the jobs a schedule created."""
        return f"{self.prefix}:jobschedule:{schedule_key}:jobs"

    def task(self, job_key: str, task_key: str) -> str:
        """Hash of one task."""
        return f"{self.prefix}:task:{job_key}:{task_key}"

    def pools(self) -> str:
        """Sorted set (lexical) of pool keys."""
        return f"{self.prefix}:pools"

    def pool(self, pool_key: str) -> str:
        """Hash of one pool."""
        return f"{self.prefix}:pool:{pool_key}"

    def pool_jobs(self, pool_key: str) -> str:
        """Sorted set of job keys with queued tasks on a pool, scored by job order."""
        return f"{self.prefix}:pool:{pool_key}:jobs"

    def pool_nodes(self, pool_key: str) -> str:
        """Sorted set (lexical) of node ids in a pool."""
        return f"{self.prefix}:pool:{pool_key}:nodes"

    def pool_provided(self, pool_key: str) -> str:
        """Set of the pool's node ids that the node provider created (and may remove)."""
        return f"{self.prefix}:pool:{pool_key}:provided"

    def node(self, node_id: str) -> str:
        """Hash of one compute node."""
        return f"{self.prefix}:node:{node_id}"

    def node_attempts(self, node_id: str) -> str:
        """Set of attempt hash keys placed on a node."""
        return f"{self.prefix}:node:{node_id}:attempts"

    def removed_nodes(self) -> str:
        """Set of node ids removed from their pools; their agents are told to leave when they call."""
        return f"{self.prefix}:nodes:removed"

    def node_seq(self) -> str:
        """Counter numbering the nodes a node provider creates."""
        return f"{self.prefix}:nodes:seq"

    def job_deadlines(self) -> str:
        """Sorted set of job keys scored by the time their maxWallClockTime runs out (ms)."""
        return f"{self.prefix}:jobs:deadlines"

    def task_deadlines(self) -> str:
        """Sorted set of task hash keys scored by the end of their lifetime (ms)."""
        return f"{self.prefix}:tasks:deadlines"

    def attempt(self, attempt_id: str) -> str:
        """Hash of one attempt."""
        return f"{self.prefix}:attempt:{attempt_id}"

    def offers(self) -> str:
        """Sorted set of offered, unclaimed attempt keys scored by offer time (ms)."""
        return f"{self.prefix}:offers"

    def leases(self) -> str:
        """Sorted set of running attempt keys scored by lease expiry (ms)."""
        return f"{self.prefix}:leases"

    def scheduler_wake(self) -> str:
        """List the scheduler blocks on; a push wakes it."""
        return f"{self.prefix}:scheduler:wake"

    def scheduler_leader(self) -> str:
        """The scheduler leadership lease (value: the holder's token)."""
        return f"{self.prefix}:scheduler:leader"

    def job_key_of_task(self, task_hash_key: str) -> str:
        """The job key inside a task hash key: a job key may hold colons (`<schedule>:job-<n>`), a task key not."""
        return task_hash_key.removeprefix(f"{self.prefix}:task:").rsplit(":", 1)[0]

    def attempt_id_of(self, attempt_key: str) -> str:
        """The attempt id inside an attempt hash key."""
        return attempt_key.removeprefix(f"{self.prefix}:attempt:")
