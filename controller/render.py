"""Stored records (Redis hashes of strings) to Azure Batch JSON."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from controller.domain.clock import UNLIMITED_DURATION, format_duration, parse_iso
from nodeagent.messages import redact

Record = dict[str, str]
"""A stored entity: a Redis hash read back as strings."""

DEFAULT_RETENTION = "P7D"


def _spec(record: Record) -> dict[str, Any]:
    """The stored request, with SAS signatures in its URLs redacted: they are never shown back."""
    spec: dict[str, Any] = json.loads(redact(record.get("spec", "{}")))
    return spec


def _states(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"state": record["state"], "stateTransitionTime": record["stt"]}
    if record.get("pstate"):
        out["previousState"] = record["pstate"]
        out["previousStateTransitionTime"] = record["pstt"]
    return out


def common(record: Record, url: str) -> dict[str, Any]:
    """The properties every entity has: url, ETag, times and states."""
    return {
        "url": url,
        "eTag": record["etag"],
        "lastModified": record["modified"],
        "creationTime": record["created"],
        **_states(record),
    }


def job_url(endpoint: str, job_id: str) -> str:
    """Absolute URL of a job."""
    return f"{endpoint}/jobs/{job_id}"


def task_url(endpoint: str, job_id: str, task_id: str) -> str:
    """Absolute URL of a task."""
    return f"{endpoint}/jobs/{job_id}/tasks/{task_id}"


def pool_url(endpoint: str, pool_id: str) -> str:
    """Absolute URL of a pool."""
    return f"{endpoint}/pools/{pool_id}"


def node_url(endpoint: str, pool_id: str, node_id: str) -> str:
    """Absolute URL of a compute node."""
    return f"{endpoint}/pools/{pool_id}/nodes/{node_id}"


def job(record: Record, endpoint: str) -> dict[str, Any]:
    """A job as BatchJob JSON."""
    spec = _spec(record)
    constraints = {
        "maxWallClockTime": UNLIMITED_DURATION,
        "maxTaskRetryCount": 0,
        **(spec.pop("constraints", None) or {}),
    }
    execution: dict[str, Any] = {"startTime": record["created"], "poolId": record["pool_id"]}
    if record.get("end"):
        execution["endTime"] = record["end"]
    if record.get("reason") or (record.get("end") and not record.get("sched_error")):
        execution["terminateReason"] = record.get("reason", "UserTerminate")
    if record.get("sched_error"):
        execution["schedulingError"] = json.loads(record["sched_error"])
    defaults = {
        "usesTaskDependencies": False,
        "priority": 0,
        "allowTaskPreemption": False,
        "maxParallelTasks": -1,
        "onAllTasksComplete": "noaction",
        "onTaskFailure": "noaction",
    }
    return {
        **defaults,
        **spec,
        "id": record["id"],
        **common(record, job_url(endpoint, record["id"])),
        "constraints": constraints,
        "executionInfo": execution,
    }


def task(record: Record, endpoint: str, expand_stats: bool = False) -> dict[str, Any]:
    """A task as BatchTask JSON (with `stats` when asked for with `$expand=stats`)."""
    spec = _spec(record)
    constraints = {
        "maxWallClockTime": UNLIMITED_DURATION,
        "retentionTime": DEFAULT_RETENTION,
        "maxTaskRetryCount": int(record.get("max_retries", "0")),
        **(spec.pop("constraints", None) or {}),
    }
    out: dict[str, Any] = {
        "requiredSlots": 1,
        "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        **spec,
        "id": record["id"],
        **common(record, task_url(endpoint, record["job"], record["id"])),
        "constraints": constraints,
        "executionInfo": _execution(record),
    }
    if record.get("node"):
        out["nodeInfo"] = _node_info(record, endpoint)
    if expand_stats:
        out["stats"] = task_stats(record, out["url"])
    return out


def task_stats(record: Record, url: str) -> dict[str, Any]:
    """BatchTaskStatistics over every attempt of the task (peak memory is the highest of them)."""
    stats = json.loads(record.get("stats") or "{}")
    gib = 1024.0**3
    start = record.get("start") or record["created"]
    wait = (parse_iso(start) - parse_iso(record["created"])).total_seconds()
    return {
        "url": f"{url}/stats",
        "startTime": start,
        "lastUpdateTime": record["modified"],
        "userCPUTime": format_duration(timedelta(seconds=stats.get("user_cpu_seconds", 0.0))),
        "kernelCPUTime": format_duration(timedelta(seconds=stats.get("kernel_cpu_seconds", 0.0))),
        "wallClockTime": format_duration(timedelta(seconds=stats.get("wall_clock_seconds", 0.0))),
        "readIOps": stats.get("read_ops", 0),
        "writeIOps": stats.get("write_ops", 0),
        "readIOGiB": stats.get("read_bytes", 0) / gib,
        "writeIOGiB": stats.get("write_bytes", 0) / gib,
        "waitTime": format_duration(timedelta(seconds=max(wait, 0.0))),
        "peakMemoryBytes": stats.get("peak_memory_bytes", 0),
    }


def _execution(record: Record) -> dict[str, Any]:
    info: dict[str, Any] = {
        "retryCount": int(record.get("retries", "0")),
        "requeueCount": int(record.get("requeues", "0")),
    }
    optional = {
        "startTime": "start",
        "endTime": "end",
        "result": "result",
        "lastRetryTime": "last_retry",
        "lastRequeueTime": "last_requeue",
    }
    info.update({name: record[field] for name, field in optional.items() if record.get(field)})
    if record.get("exit"):
        info["exitCode"] = int(record["exit"])
    if record.get("failure"):
        info["failureInfo"] = _failure(json.loads(record["failure"]))
    return info


def _failure(failure: dict[str, Any]) -> dict[str, Any]:
    out = {"category": failure["category"], "code": failure["code"], "message": failure["message"]}
    if failure.get("details"):
        out["details"] = failure["details"]
    return out


def _node_info(record: Record, endpoint: str) -> dict[str, Any]:
    pool_id, node_id = record.get("pool_id", ""), record["node"]
    return {
        "affinityId": f"TVM:{node_id}",
        "nodeUrl": node_url(endpoint, pool_id, node_id),
        "poolId": pool_id,
        "nodeId": node_id,
        "taskRootDirectory": f"workitems/{record['job']}/job-1/{record['id']}",
        "taskRootDirectoryUrl": f"{task_url(endpoint, record['job'], record['id'])}/files",
    }


def pool(record: Record, node_count: int, endpoint: str) -> dict[str, Any]:
    """A pool as BatchPool JSON."""
    spec = _spec(record)
    defaults: dict[str, Any] = {
        "resizeTimeout": "PT15M",
        "targetDedicatedNodes": 0,
        "targetLowPriorityNodes": 0,
        "enableAutoScale": False,
        "enableInterNodeCommunication": False,
        "taskSlotsPerNode": 1,
        "taskSchedulingPolicy": {"nodeFillType": "spread"},
    }
    return {
        **defaults,
        **spec,
        "id": record["id"],
        **common(record, pool_url(endpoint, record["id"])),
        "allocationState": record.get("alloc_state", "steady"),
        "allocationStateTransitionTime": record.get("alloc_stt", record["created"]),
        "currentDedicatedNodes": node_count,
        "currentLowPriorityNodes": 0,
        **({"targetDedicatedNodes": int(record["target"])} if record.get("target") else {}),
        **({"resizeErrors": json.loads(record["resize_errors"])} if record.get("resize_errors") else {}),
    }


def node(record: Record, pool_spec: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """A compute node as BatchNode JSON."""
    used = int(record.get("used", "0"))
    out: dict[str, Any] = {
        "id": record["id"],
        "url": node_url(endpoint, record["pool_id"], record["id"]),
        "state": shown_node_state(record),
        "schedulingState": record.get("scheduling", "enabled"),
        "stateTransitionTime": record["stt"],
        "lastBootTime": record.get("boot") or record["alloc"],
        "allocationTime": record["alloc"],
        "ipAddress": record.get("ip", ""),
        "affinityId": f"TVM:{record['id']}",
        "vmSize": pool_spec.get("vmSize", ""),
        "totalTasksRun": int(record.get("total_run", "0")),
        "totalTasksSucceeded": int(record.get("total_ok", "0")),
        "runningTaskSlotsCount": used,
        "isDedicated": True,
        "nodeAgentInfo": {
            "version": record.get("version", ""),
            "lastUpdateTime": record.get("boot") or record["alloc"],
        },
    }
    if pool_spec.get("startTask"):
        out["startTask"] = json.loads(redact(json.dumps(pool_spec["startTask"])))
    if record.get("start_task"):
        out["startTaskInfo"] = start_task_info(json.loads(record["start_task"]))
    return out


NODE_COUNT_NAMES = {
    "creating": "creating",
    "idle": "idle",
    "offline": "offline",
    "preempted": "preempted",
    "rebooting": "rebooting",
    "reimaging": "reimaging",
    "running": "running",
    "starting": "starting",
    "starttaskfailed": "startTaskFailed",
    "leavingpool": "leavingPool",
    "unknown": "unknown",
    "unusable": "unusable",
    "waitingforstarttask": "waitingForStartTask",
    "deallocated": "deallocated",
    "deallocating": "deallocating",
    "upgradingos": "upgradingOS",
}


def node_counts(pool_id: str, node_states: list[str]) -> dict[str, Any]:
    """A pool's BatchPoolNodeCounts: its nodes by state (every node is dedicated)."""
    dedicated = dict.fromkeys(NODE_COUNT_NAMES.values(), 0)
    for state in node_states:
        dedicated[NODE_COUNT_NAMES.get(state, "unknown")] += 1
    dedicated["total"] = len(node_states)
    low_priority = {**dict.fromkeys(NODE_COUNT_NAMES.values(), 0), "total": 0}
    return {"poolId": pool_id, "dedicated": dedicated, "lowPriority": low_priority}


def shown_node_state(record: Record) -> str:
    """The state a node shows: `running` while it has tasks, `offline` when idle with scheduling disabled."""
    stored = record["state"]
    if stored != "idle":
        return stored
    if int(record.get("used", "0")) > 0:
        return "running"
    return "offline" if record.get("scheduling", "enabled") == "disabled" else "idle"


def start_task_info(stored: dict[str, Any]) -> dict[str, Any]:
    """A node's start task report as Azure's startTaskInfo."""
    info: dict[str, Any] = {
        "state": stored["state"],
        "startTime": stored["start_time"],
        "retryCount": stored.get("retry_count", 0),
    }
    optional = {"endTime": "end_time", "exitCode": "exit_code", "result": "result", "lastRetryTime": "last_retry_time"}
    info.update({name: stored[field] for name, field in optional.items() if stored.get(field) is not None})
    if stored.get("failure"):
        info["failureInfo"] = _failure(stored["failure"])
    return info
