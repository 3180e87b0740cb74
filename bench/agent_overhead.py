"""What the node agent adds to a task: claim to process start, and process exit to report, as JSON.

Runs the agent's real step pipeline (directories, packages, resource files,
the command, uploads, the report) on `/bin/true`, in three shapes: no files;
one 1 MB resource file downloaded from Azurite; and that plus one output file
uploaded to Azurite. The baseline in the same run is starting `/bin/true` with
subprocess directly. Two agent configurations are measured: `plain` (no
identity switching, no cgroups, as an unprivileged agent runs) and `node` (as a
root agent runs: the pool's auto user and a cgroup per attempt, where available). Commands
start through the agent's launcher process, as in the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from common import free_port

from batchyard.envfile import connection_string
from batchyard.tools import find_azurite
from nodeagent import cgroups, runner
from nodeagent.blob import AzureBlobStore
from nodeagent.identity import IdentityResolver
from nodeagent.launcher import Launcher
from nodeagent.layout import NodeLayout
from nodeagent.messages import AttemptSpec, OutputFileSpec, ReportAnswer, ResourceFileSpec, TaskReport
from nodeagent.settings import agent_path
from nodeagent.steps.base import RunDeps

API_VERSION = "2025-11-05"


@contextmanager
def azurite(scratch: Path) -> Iterator[str]:
    """A private Azurite blob service; yields its connection string."""
    port = free_port()
    argv = [find_azurite(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(scratch / "azurite"),
            "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise SystemExit("azurite did not start")
            time.sleep(0.05)
        yield connection_string(port)
    finally:
        child.terminate()
        child.wait(timeout=30)


@dataclass
class Clock:
    """Records when the report was handed over (the process's own times come from its result)."""

    reported: datetime = field(default_factory=lambda: datetime.now(UTC))
    reports: list[TaskReport] = field(default_factory=list)

    def deliver(self, attempt_id: str, report: TaskReport) -> ReportAnswer:
        """Reporter: the report is ready to send."""
        self.reported = datetime.now(UTC)
        self.reports.append(report)
        return ReportAnswer(accepted=True)


def blobs(conn: str) -> tuple[str, str]:
    """A 1 MB input blob's read URL and an output container's write URL."""
    service = BlobServiceClient.from_connection_string(conn, api_version=API_VERSION)
    service.create_container("inputs")
    service.create_container("outputs")
    service.get_container_client("inputs").upload_blob("one-mb.bin", os.urandom(1024 * 1024))
    key, expiry = service.credential.account_key, datetime.now(UTC) + timedelta(hours=1)
    name = service.account_name or ""
    read = generate_blob_sas(name, "inputs", "one-mb.bin", account_key=key,
                             permission=BlobSasPermissions(read=True), expiry=expiry)  # fmt: skip
    write_permission = ContainerSasPermissions(write=True, create=True)
    write = generate_container_sas(name, "outputs", account_key=key, permission=write_permission, expiry=expiry)
    base = service.url.rstrip("/")
    return f"{base}/inputs/one-mb.bin?{read}", f"{base}/outputs?{write}"


def spec(shape: str, input_url: str, output_url: str) -> AttemptSpec:
    """An attempt of `/bin/true` with the files of `shape`."""
    resources = [ResourceFileSpec(http_url=input_url, file_path="input.bin")] if shape != "none" else []
    outputs = []
    if shape == "in+out":
        outputs = [OutputFileSpec(file_pattern="input.bin", container_url=output_url, path=f"{uuid.uuid4().hex}.bin")]
    attempt = uuid.uuid4().hex
    return AttemptSpec(
        attempt_id=attempt, job_id="bench", task_id=f"t{attempt[:12]}", pool_id="bench", node_id="bench-node",
        account_name="bench", account_url="http://127.0.0.1/", command_line="/bin/true",
        resource_files=resources, output_files=outputs,
    )  # fmt: skip


def measure(
    make_deps: Callable[[Clock], RunDeps], layout: NodeLayout, make_spec: Callable[[], AttemptSpec], runs: int
) -> dict[str, Any]:
    """Median and p95 of claim-to-start and exit-to-report over `runs` attempts."""
    before, after = [], []
    for _ in range(runs):
        clock = Clock()
        deps = make_deps(clock)
        attempt = make_spec()
        claimed = datetime.now(UTC)
        context = runner.run(attempt, layout, deps)
        assert context.process is not None and clock.reports[-1].exit_code == 0, clock.reports[-1]
        before.append((context.process.started_at - claimed).total_seconds() * 1000)
        after.append((clock.reported - context.process.ended_at).total_seconds() * 1000)
    return {"claim_to_start_ms": summary(before), "exit_to_report_ms": summary(after)}


def summary(values: list[float]) -> dict[str, float]:
    """Median and 95th percentile, rounded."""
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2), "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 2)}


def baseline(runs: int) -> dict[str, float]:
    """Starting and waiting for `/bin/true` directly."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return summary(times)


def deps_factory(config: str, blob: AzureBlobStore, launcher: Launcher) -> Callable[[Clock], RunDeps]:
    """RunDeps for the `plain` or `node` configuration, commands started by the agent's launcher."""
    identities = IdentityResolver.for_agent("bybench") if config == "node" else IdentityResolver()
    support = cgroups.detect("auto", "bench-node") if config == "node" else cgroups.NO_CGROUPS

    def make(clock: Clock) -> RunDeps:
        return RunDeps(
            blob=blob,
            reporter=clock,
            agent_path=agent_path(),
            identities=identities,
            cgroups=support,
            run_process=launcher.run,
        )

    return make


def main() -> int:
    """Run every shape in both configurations and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    results: dict[str, Any] = {"runs": args.runs, "baseline_subprocess_ms": baseline(args.runs)}
    with tempfile.TemporaryDirectory(prefix="batchyard-bench-", dir="/tmp") as scratch:
        os.chmod(scratch, 0o755)
        with azurite(Path(scratch)) as conn:
            input_url, output_url = blobs(conn)
            layout = NodeLayout(Path(scratch) / "node")
            layout.create()
            blob = AzureBlobStore()
            launcher = Launcher()
            try:
                for config in ("plain", "node"):
                    make_deps = deps_factory(config, blob, launcher)
                    for shape in ("none", "in", "in+out"):
                        make_spec = partial(spec, shape, input_url, output_url)
                        results[f"{config}/{shape}"] = measure(make_deps, layout, make_spec, args.runs)
            finally:
                launcher.close()
        accounts = IdentityResolver.for_agent("bybench").accounts
        if accounts is not None:
            accounts.remove("bybenchpool-nonadmin")
    results["cgroups"] = cgroups.detect("auto", "bench-node").version or "none"
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
