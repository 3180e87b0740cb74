"""A real `batchyard up` in a subprocess, with a check on teardown that it left no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from batchyard import envfile, procs, services
from batchyard.client import BatchClient
from batchyard.credentials import load_or_create
from batchyard.services import SHARED_NODES_BASE, AgentSpec, Layout
from tests.support.servers import free_port

START_TIMEOUT_SECONDS = 120.0
"""Longest `batchyard up` may take until its env file exists and the controller answers."""

STOP_TIMEOUT_SECONDS = 90.0
"""Longest `batchyard up` may take to stop everything after SIGTERM."""


def up_argv(data_dir: Path, port: int, blob_port: int, redis_port: int, agents: int, slots: int) -> list[str]:
    """The command line of `batchyard up` with every port and the data directory chosen."""
    return [sys.executable, "-m", "batchyard.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
            "--blob-port", str(blob_port), "--redis-port", str(redis_port), "--agents", str(agents),
            "--slots", str(slots)]  # fmt: skip


def _mentions(process: psutil.Process, text: str) -> bool:
    """True when the process's command line or environment contains `text`."""
    try:
        if any(text in part for part in process.cmdline()):
            return True
        return any(text in value for value in process.environ().values())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes, other than this one, whose command line or environment contains `text`."""
    me = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != me and p.is_running() and _mentions(p, text)]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes that still exist and are not zombies."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


@dataclass
class LocalStack:
    """One `batchyard up` on free ports: `.url`, `.account_name`, `.account_key`, `.connection_string`, `.pid`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    blob_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    agents: int = 2
    slots: int = 4
    child: procs.Child | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def env_path(self) -> Path:
        """The env file `batchyard up` writes once everything answers."""
        return self.data_dir / envfile.ENV_FILE_NAME

    @property
    def log_path(self) -> Path:
        """Where the output of `batchyard up` itself goes."""
        return self.data_dir.parent / f"{self.data_dir.name}-up.log"

    @property
    def pid(self) -> int:
        """Process id of `batchyard up`."""
        assert self.child is not None, "the stack is not running"
        return self.child.pid

    @property
    def url(self) -> str:
        """The Batch account URL."""
        return self.env["BATCH_ACCOUNT_URL"]

    @property
    def account_name(self) -> str:
        """The Batch account name."""
        return self.env["BATCH_ACCOUNT_NAME"]

    @property
    def account_key(self) -> str:
        """The Batch account key."""
        return self.env["BATCH_ACCOUNT_KEY"]

    @property
    def connection_string(self) -> str:
        """Azurite's connection string."""
        return self.env["AZURE_STORAGE_CONNECTION_STRING"]

    def client(self) -> BatchClient:
        """A signed REST client for this stack."""
        return BatchClient(self.url, self.account_name, self.account_key)

    def start_agent(self, pool_id: str, node_id: str, slots: int = 2) -> procs.Child:
        """Start one more node agent joined to `pool_id`, the way `up` starts its own; the caller stops it."""
        layout = Layout(self.data_dir)
        secret = load_or_create(self.data_dir).node_secret
        agent = AgentSpec(node_id=node_id, slots=slots, file_server_port=free_port())
        env = {**services.agent_env(agent, layout, self.port, self.redis_port, secret), "NODEAGENT_POOL_ID": pool_id}
        layout.node_root(node_id).mkdir(parents=True, exist_ok=True)
        return procs.start(node_id, services.python_argv("nodeagent"), env, layout.log(node_id))

    def start(self) -> None:
        """Run `batchyard up` and wait until its env file exists and the controller answers /healthz."""
        argv = up_argv(self.data_dir, self.port, self.blob_port, self.redis_port, self.agents, self.slots)
        self.child = procs.start("batchyard up", argv, dict(os.environ), self.log_path)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (self.env_path.exists() and self._healthy()):
            if not self.child.alive() or time.monotonic() > deadline:
                self._fail(f"batchyard up is not ready (exit code {self.child.process.poll()})")
            time.sleep(0.2)
        self.env = envfile.parse(self.env_path.read_text(encoding="utf-8"))

    def _healthy(self) -> bool:
        """True when the controller answers /healthz with 200."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _fail(self, message: str) -> None:
        """Fail the test with the end of every log of this stack, after stopping what is left."""
        logs = [self.log_path, *sorted((self.data_dir / "logs").glob("*.log"))]
        tails = "\n".join(f"--- {path.name}\n{procs.log_tail(path, 3000)}" for path in logs)
        self.stop(check=False)
        pytest.fail(f"{message}\n{tails}")

    def stop(self, check: bool = True) -> int | None:
        """SIGTERM `batchyard up`, wait for it, and (with `check`) fail if any process of the stack is left."""
        if self.child is None:
            return None
        child, self.child = self.child, None
        started = _descendants(child.pid)
        if child.alive():
            os.kill(child.pid, signal.SIGTERM)
        try:
            code = child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except Exception:
            procs.stop_all([child], 1.0)
            raise
        leftovers = self._leftovers(started)
        self.remove_shared_node_roots()
        if check and leftovers:
            pytest.fail(f"processes left behind by batchyard up: {leftovers}")
        return code

    def remove_shared_node_roots(self) -> None:
        """Delete node roots a root-run stack kept outside its (temporary) data directory."""
        nodes_dir = Layout(self.data_dir).nodes_dir
        if nodes_dir.is_relative_to(SHARED_NODES_BASE):
            shutil.rmtree(nodes_dir, ignore_errors=True)

    def _leftovers(self, started: list[psutil.Process]) -> list[str]:
        """Describe and kill (by pid) any process of this stack still alive after it stopped."""
        marker = str(self.data_dir)
        deadline = time.monotonic() + 10.0
        while (_alive(started) or processes_mentioning(marker)) and time.monotonic() < deadline:
            time.sleep(0.2)
        remaining = {p.pid: p for p in [*_alive(started), *processes_mentioning(marker)]}
        described = []
        for process in remaining.values():
            try:
                described.append(f"{process.pid} {' '.join(process.cmdline())[:200]}")
                process.kill()
            except psutil.NoSuchProcess:
                continue
        return described


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid` right now."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
