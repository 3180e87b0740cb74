"""A stack whose every process the test starts itself: Redis, the controller and agents, each killable and restartable.

`batchyard up` stops its whole stack when one of its children dies, so fault tests that kill the
controller, Redis or an agent start the same programs the way `up` does (`batchyard.services`: the
same argv and environment) but as children of the test. No Azurite: fault tests use no blobs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchyard import procs, services, tools
from batchyard.client import BatchClient
from batchyard.credentials import Credentials, load_or_create
from batchyard.ports import LOOPBACK
from batchyard.readiness import http_answers, redis_answers, wait_until
from batchyard.services import SHARED_NODES_BASE, AgentSpec, Layout
from batchyard.up import remove_accounts
from tests.support.servers import free_port, require_tool
from tests.support.stack import processes_mentioning

POOL_ID = "faults"
"""The pool the fault stack's agents join."""

STACK_VARIABLE = "BYFAULT_STACK"
"""Set on every process of a fault stack (its data directory), to find leftovers."""

STOP_GRACE_SECONDS = 15.0
"""How long each process gets after SIGTERM when the stack stops."""

UNUSED_BLOB_PORT = 9
"""The controller needs an auto-storage connection string; fault tests never use it (discard port)."""


@dataclass
class FaultStack:
    """Redis, the controller and agents on `host`, with `env` added to every process's environment."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    host: str = LOOPBACK
    port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    redis: procs.Child | None = None
    controller: procs.Child | None = None
    agents: dict[str, procs.Child] = field(default_factory=dict)
    credentials: Credentials = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials = load_or_create(self.data_dir)

    @property
    def layout(self) -> Layout:
        """Where the stack keeps its files (the same layout `up` uses)."""
        return Layout(self.data_dir)

    @property
    def url(self) -> str:
        """The controller's URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def redis_url(self) -> str:
        """The Redis URL every process uses."""
        return f"redis://{self.host}:{self.redis_port}/0"

    def client(self) -> BatchClient:
        """A signed REST client for the controller."""
        return BatchClient(self.url, self.credentials.account_name, self.credentials.account_key)

    def common_env(self) -> dict[str, str]:
        """What every process of the stack gets on top of its own settings."""
        return {**self.env, STACK_VARIABLE: str(self.data_dir)}

    def redis_argv(self) -> list[str]:
        """`redis-server` as `up` runs it (AOF on); also bound to `host` when that is not loopback.

        Protected mode refuses clients on any address but loopback; `host` is only ever the host end of
        a test's private veth pair, so it is turned off there.
        """
        binary = require_tool(tools.find_redis_server)
        argv = [binary, "--bind", LOOPBACK, "--port", str(self.redis_port), "--appendonly", "yes", "--save", "",
                "--dir", str(self.layout.redis_dir)]  # fmt: skip
        if self.host != LOOPBACK:
            argv[2:3] = [LOOPBACK, self.host]
            argv += ["--protected-mode", "no"]
        return argv

    def start(self) -> None:
        """Start Redis and the controller and create the pool."""
        self.start_redis()
        self.start_controller()
        self.create_pool()

    def start_redis(self) -> None:
        """Start Redis (again, on the same port and directory) and wait for PING."""
        self.layout.redis_dir.mkdir(parents=True, exist_ok=True)
        env = {**services.base_env(), **self.common_env()}
        self.redis = procs.start("redis", self.redis_argv(), env, self.layout.log("redis"))
        wait_until(self.redis, redis_answers(self.redis_url), 30.0, "answering PING")

    def controller_env(self) -> dict[str, str]:
        """The controller's environment: `up`'s, on `host`, plus the stack's additions."""
        env = services.controller_env(self.port, self.redis_port, UNUSED_BLOB_PORT, self.credentials)
        env.update(
            {"CONTROLLER_HOST": self.host, "CONTROLLER_PUBLIC_URL": self.url, "CONTROLLER_REDIS_URL": self.redis_url}
        )
        return {**env, **self.common_env()}

    def start_controller(self) -> None:
        """Start the controller (again) the way `up` does and wait for /healthz."""
        env = self.controller_env()
        self.controller = procs.start(
            "controller", services.python_argv("controller"), env, self.layout.log("controller")
        )
        wait_until(self.controller, http_answers(self.url + "/healthz", 200), 60.0, "answering /healthz")

    def create_pool(self, pool_id: str = POOL_ID, slots: int = 2) -> None:
        """Create the pool the agents join."""
        body = {**services.pool_body(0, slots), "id": pool_id}
        with self.client() as client:
            response = client.post("/pools", body)
        assert response.status_code == 201, response.text

    def agent_env(self, node_id: str, slots: int, address: str | None = None) -> dict[str, str]:
        """An agent's environment: `up`'s, pointed at this stack; `address` is where it serves files."""
        spec = AgentSpec(node_id=node_id, slots=slots, file_server_port=free_port())
        env = services.agent_env(spec, self.layout, self.port, self.redis_port, self.credentials.node_secret)
        env.update(
            {
                "NODEAGENT_POOL_ID": POOL_ID,
                "NODEAGENT_CONTROLLER_URL": self.url,
                "NODEAGENT_BROKER_URL": self.redis_url,
                "NODEAGENT_FILE_SERVER_HOST": address or LOOPBACK,
                "NODEAGENT_ADVERTISE_HOST": address or LOOPBACK,
            }
        )
        return {**env, **self.common_env()}

    def start_agent(self, node_id: str, slots: int = 2, netns: str | None = None, address: str | None = None) -> int:
        """Start an agent (inside network namespace `netns` if given) and wait until it is idle; its pid."""
        self.layout.node_root(node_id).mkdir(parents=True, exist_ok=True)
        argv = services.python_argv("nodeagent")
        if netns is not None:
            argv = ["ip", "netns", "exec", netns, *argv]
        env = self.agent_env(node_id, slots, address)
        self.agents[node_id] = procs.start(node_id, argv, env, self.layout.log(node_id))
        self.wait_node(node_id, ("idle", "running"))
        return self.agents[node_id].pid

    def node_state(self, node_id: str) -> str:
        """The node's state as the API shows it, or `absent`."""
        with self.client() as client:
            response = client.get(f"/pools/{POOL_ID}/nodes/{node_id}")
        return str(response.json().get("state")) if response.status_code == 200 else "absent"

    def wait_node(self, node_id: str, states: tuple[str, ...], timeout: float = 60.0) -> None:
        """Wait until the node is in one of `states`."""
        child = self.agents.get(node_id)
        deadline = time.monotonic() + timeout
        while self.node_state(node_id) not in states:
            if child is not None and not child.alive():
                pytest.fail(f"agent {node_id} exited with {child.process.returncode}:\n{child.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node {node_id} is not {states} after {timeout:.0f} s:\n{self.log_tail(node_id)}")
            time.sleep(0.2)

    def kill(self, child: procs.Child | None, signum: int = signal.SIGKILL) -> None:
        """Send `signum` to one process the stack started (by pid) and, unless it is SIGSTOP/SIGCONT, reap it."""
        assert child is not None, "not running"
        os.kill(child.pid, signum)
        if signum not in (signal.SIGSTOP, signal.SIGCONT):
            child.process.wait(timeout=30)

    def kill_agent(self, node_id: str) -> None:
        """SIGKILL an agent process."""
        self.kill(self.agents.pop(node_id))

    def log_tail(self, name: str, limit: int = 4000) -> str:
        """The end of one process's log."""
        return procs.log_tail(self.layout.log(name), limit)

    def log_text(self, name: str) -> str:
        """A whole log of the stack."""
        path = self.layout.log(name)
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> list[str]:
        """Stop agents, controller and Redis, remove task accounts and shared node roots; leftovers (killed)."""
        procs.stop_all(list(self.agents.values()), STOP_GRACE_SECONDS)
        self.agents.clear()
        for child in (self.controller, self.redis):
            if child is not None:
                procs.stop_all([child], STOP_GRACE_SECONDS)
        self.controller = self.redis = None
        leftovers = _kill_leftovers(str(self.data_dir))
        remove_accounts(self.layout.user_prefix)
        if self.layout.nodes_dir.is_relative_to(SHARED_NODES_BASE):
            shutil.rmtree(self.layout.nodes_dir, ignore_errors=True)
        return leftovers


def _kill_leftovers(marker: str) -> list[str]:
    """Kill (by pid) and describe the processes still carrying the stack's marker."""
    described = []
    deadline = time.monotonic() + 10.0
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in processes_mentioning(marker):
        try:
            described.append(f"{process.pid} {' '.join(process.cmdline())[:200]}")
            process.kill()
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
    return described


FAST_ENV = {
    "CONTROLLER_LEASE_SECONDS": "8",
    "CONTROLLER_NODE_TIMEOUT_SECONDS": "8",
    "CONTROLLER_DISPATCH_TIMEOUT_SECONDS": "4",
    "CONTROLLER_SCHEDULER_TICK_SECONDS": "0.2",
    "NODEAGENT_HEARTBEAT_SECONDS": "1",
    "NODEAGENT_HEARTBEAT_TIMEOUT_SECONDS": "2",
    "NODEAGENT_KILL_GRACE_SECONDS": "1",
    "NODEAGENT_FENCE_SECONDS": "6",
}
"""Short leases and timeouts: a lease of 8 s renewed every second, so agents fence after 6 s of silence."""


@contextlib.contextmanager
def fault_stack(data_dir: Path, env: dict[str, str] | None = None, host: str = LOOPBACK) -> Iterator[FaultStack]:
    """A started FaultStack with FAST_ENV (plus `env`); stopped afterwards, failing if a process was left."""
    stack = FaultStack(data_dir, env={**FAST_ENV, **(env or {})}, host=host)
    try:
        stack.start()
        yield stack
    finally:
        leftovers = stack.stop()
    assert not leftovers, f"processes left behind: {leftovers}"
