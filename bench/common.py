"""Helpers the benchmarks share: free ports, percentiles, a private redis-server, a `batchyard up` stack."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from batchyard.client import BatchClient
from batchyard.envfile import ENV_FILE_NAME, parse
from batchyard.services import SHARED_NODES_BASE, Layout, redis_argv, redis_url
from batchyard.tools import find_redis_server
from controller.domain.ids import key_of
from controller.settings import ControllerSettings
from controller.store.keys import Keys

COLLECTION = 100
"""Tasks per addtaskcollection call (the service's maximum)."""

STACK_ROLES = (("launcher", "nodeagent.launcherd"), ("agent", "-m nodeagent"), ("controller", "-m controller"),
               ("redis", "redis-server"), ("azurite", "azurite"))  # fmt: skip
"""How a stack process is told by its command line (first match wins)."""


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def parse_time(stamp: str) -> datetime:
    """A controller ISO timestamp ("...Z") as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def seconds_between(start: str, end: str) -> float:
    """Seconds from one controller timestamp to another."""
    return (parse_time(end) - parse_time(start)).total_seconds()


def stop_process(child: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM one child we started, by its PID; SIGKILL if it does not exit in time."""
    if child.poll() is None:
        os.kill(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


@contextmanager
def redis_server(scratch: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, configured like `batchyard up`'s (AOF on); yields its URL."""
    port = free_port()
    scratch.mkdir(parents=True, exist_ok=True)
    layout = Layout(scratch)
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    log = (scratch / "redis.log").open("wb")
    child = subprocess.Popen(redis_argv(find_redis_server(), port, layout), stdout=log, stderr=subprocess.STDOUT)
    url = redis_url(port)
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit(f"redis-server did not start; see {scratch / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        stop_process(child)
        log.close()


def start_stack(
    data_dir: Path, agents: int, slots: int, redis_port: int = 0
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Run `batchyard up` and wait until it has written its env file and the controller answers."""
    port = free_port()
    argv = [sys.executable, "-m", "batchyard.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
            "--blob-port", str(free_port()), "--agents", str(agents), "--slots", str(slots)]  # fmt: skip
    if redis_port:
        argv += ["--redis-port", str(redis_port)]
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = (data_dir.parent / "up.log").open("wb")
    child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        env_path = data_dir / ENV_FILE_NAME
        if env_path.exists():
            env = parse(env_path.read_text())
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return child, env
            except httpx.HTTPError:
                pass
        if child.poll() is not None:
            break
        time.sleep(0.2)
    child.kill()
    raise SystemExit(f"batchyard up did not start; see {data_dir.parent / 'up.log'}")


def stack_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this benchmark's stack, by role: each process's own and its reaped children's.

    The stack is every descendant of this process; launchers include the commands they ran.
    """
    used: dict[str, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            times = child.cpu_times()
        except psutil.Error:
            continue
        role = next((name for name, marker in STACK_ROLES if marker in command), None)
        if role is not None:
            total = times.user + times.system + times.children_user + times.children_system
            used[role] = used.get(role, 0.0) + total
    return used


def cpu_ms_per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
    """Milliseconds of CPU per task by role between two `stack_cpu_seconds` readings, with their total."""
    per_task = {role: round((after[role] - before.get(role, 0.0)) * 1000 / tasks, 2) for role in after}
    return {**per_task, "total": round(sum(per_task.values()), 2)}


def redis_work(redis_port: int) -> dict[str, int]:
    """What the stack's Redis has done so far: commands, client reads (about one per round trip), script runs."""
    store = redis.Redis.from_url(redis_url(redis_port))
    try:
        stats = store.info("stats")
        commands = store.info("commandstats")
    finally:
        store.close()
    scripts = sum(int(commands.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))
    return {
        "commands": int(stats["total_commands_processed"]),
        "round_trips": int(stats["total_reads_processed"]),
        "scripts": scripts,
    }


def per_task(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, float]:
    """Each count's growth between two readings, per task."""
    return {name: round((after[name] - before[name]) / tasks, 2) for name in after}


def remove_shared_node_roots(data_dir: Path) -> None:
    """Delete the node roots a root-run stack kept outside its temporary data directory."""
    nodes_dir = Layout(data_dir).nodes_dir
    if nodes_dir.is_relative_to(SHARED_NODES_BASE):
        shutil.rmtree(nodes_dir, ignore_errors=True)


@contextmanager
def stack(scratch: Path, agents: int, slots: int, redis_port: int = 0) -> Iterator[BatchClient]:
    """A fresh `batchyard up` under `scratch` with its nodes up; yields a signed client; stops it and cleans up."""
    data_dir = scratch / "data"
    child, env = start_stack(data_dir, agents, slots, redis_port)
    try:
        with BatchClient(env["BATCH_ACCOUNT_URL"], env["BATCH_ACCOUNT_NAME"], env["BATCH_ACCOUNT_KEY"]) as client:
            wait_for_nodes(client, agents)
            yield client
    finally:
        os.kill(child.pid, signal.SIGTERM)
        child.wait(timeout=60)
        remove_shared_node_roots(data_dir)


def wait_for_nodes(client: BatchClient, count: int) -> None:
    """Until `count` nodes of pool local are idle."""
    while True:
        nodes = client.get("/pools/local/nodes").json()["value"]
        if sum(node["state"] in ("idle", "running") for node in nodes) >= count:
            return
        time.sleep(0.2)


def add_all(client: BatchClient, job_id: str, total: int) -> None:
    """Add `total` `/bin/true` tasks in collections of 100."""
    for start in range(0, total, COLLECTION):
        tasks = [{"id": f"t{i:06d}", "commandLine": "/bin/true"} for i in range(start, min(total, start + COLLECTION))]
        response = client.post(f"/jobs/{job_id}/addtaskcollection", {"value": tasks})
        response.raise_for_status()


def completed_tasks(client: BatchClient, job_id: str) -> list[dict[str, Any]]:
    """Every completed task with its creation and execution times."""
    params = {"$filter": "state eq 'completed'", "$select": "id,creationTime,executionInfo"}
    tasks: list[dict[str, Any]] = []
    response = client.get(f"/jobs/{job_id}/tasks", params=params).json()
    tasks += response["value"]
    while "odata.nextLink" in response:
        token = httpx.URL(response["odata.nextLink"]).params["$skiptoken"]
        response = client.get(f"/jobs/{job_id}/tasks", params={**params, "$skiptoken": token}).json()
        tasks += response["value"]
    return tasks


def wait_completed(redis_port: int, job_id: str, total: int, timeout: float = 600) -> None:
    """Until the job's completed-task counter in the stack's Redis reaches `total` (one HGET per half second).

    Cheaper than listing the job's tasks over the API while they run, which would load the controller measured.
    """
    job_key = Keys(ControllerSettings.model_fields["key_prefix"].default).job(key_of(job_id))
    store = redis.Redis.from_url(redis_url(redis_port))
    deadline = time.monotonic() + timeout
    try:
        while (done := int(store.hget(job_key, "n_completed") or 0)) < total:
            if time.monotonic() > deadline:
                raise SystemExit(f"batchyard: only {done} of {total} tasks completed")
            time.sleep(0.5)
    finally:
        store.close()
