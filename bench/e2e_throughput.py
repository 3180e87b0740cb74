"""1,000 `/bin/true` tasks through a fresh `batchyard up`: throughput and add-to-completion latency, as JSON."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from batchyard.client import BatchClient
from batchyard.envfile import ENV_FILE_NAME, parse
from batchyard.services import SHARED_NODES_BASE, Layout

COLLECTION = 100


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_stack(data_dir: Path, agents: int, slots: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Run `batchyard up` and wait until it has written its env file and the controller answers."""
    port = free_port()
    argv = [sys.executable, "-m", "batchyard.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
            "--blob-port", str(free_port()), "--agents", str(agents), "--slots", str(slots)]  # fmt: skip
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


def remove_shared_node_roots(data_dir: Path) -> None:
    """Delete the node roots a root-run stack kept outside its temporary data directory."""
    nodes_dir = Layout(data_dir).nodes_dir
    if nodes_dir.is_relative_to(SHARED_NODES_BASE):
        shutil.rmtree(nodes_dir, ignore_errors=True)


def wait_for_nodes(client: BatchClient, count: int) -> None:
    """Until `count` nodes of pool local are idle."""
    while True:
        nodes = client.get("/pools/local/nodes").json()["value"]
        if sum(node["state"] in ("idle", "running") for node in nodes) >= count:
            return
        time.sleep(0.2)


def add_all(client: BatchClient, job_id: str, total: int) -> None:
    """Add `total` tasks in collections of 100."""
    for start in range(0, total, COLLECTION):
        tasks = [{"id": f"t{i:06d}", "commandLine": "/bin/true"} for i in range(start, min(total, start + COLLECTION))]
        response = client.post(f"/jobs/{job_id}/addtaskcollection", {"value": tasks})
        response.raise_for_status()


def completed_tasks(client: BatchClient, job_id: str) -> list[dict[str, Any]]:
    """Every completed task with its creation and end times."""
    params = {"$filter": "state eq 'completed'", "$select": "id,creationTime,executionInfo"}
    tasks: list[dict[str, Any]] = []
    response = client.get(f"/jobs/{job_id}/tasks", params=params).json()
    tasks += response["value"]
    while "odata.nextLink" in response:
        token = httpx.URL(response["odata.nextLink"]).params["$skiptoken"]
        response = client.get(f"/jobs/{job_id}/tasks", params={**params, "$skiptoken": token}).json()
        tasks += response["value"]
    return tasks


def _seconds(start: str, end: str) -> float:
    return (
        datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(client: BatchClient, total: int) -> dict[str, Any]:
    """Add the tasks, wait for all of them, and summarise."""
    job_id = "bench"
    client.post("/jobs", {"id": job_id, "poolInfo": {"poolId": "local"}}).raise_for_status()
    started = time.monotonic()
    add_all(client, job_id, total)
    added = time.monotonic()
    while len(done := completed_tasks(client, job_id)) < total:
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    latencies = [_seconds(task["creationTime"], task["executionInfo"]["endTime"]) for task in done]
    failed = sum(task["executionInfo"].get("exitCode") != 0 for task in done)
    return {
        "tasks": total,
        "failed": failed,
        "add_seconds": round(added - started, 3),
        "total_seconds": round(elapsed, 3),
        "tasks_per_second": round(total / elapsed, 1),
        "latency_p50_seconds": round(statistics.median(latencies), 3),
        "latency_p95_seconds": round(percentile(latencies, 0.95), 3),
    }


def main() -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-") as scratch:
        child, env = start_stack(Path(scratch) / "data", args.agents, args.slots)
        try:
            with BatchClient(env["BATCH_ACCOUNT_URL"], env["BATCH_ACCOUNT_NAME"], env["BATCH_ACCOUNT_KEY"]) as client:
                wait_for_nodes(client, args.agents)
                result = measure(client, args.tasks)
        finally:
            os.kill(child.pid, signal.SIGTERM)
            child.wait(timeout=60)
            remove_shared_node_roots(Path(scratch) / "data")
    result.update({"agents": args.agents, "slots_per_agent": args.slots, "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
