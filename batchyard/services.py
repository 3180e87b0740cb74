"""How each process of a local stack is started: its command line and environment."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from batchyard.credentials import Credentials
from batchyard.envfile import connection_string
from batchyard.ports import LOOPBACK
from batchyard.tools import project_root
from controller.domain.images import HOST_IMAGE

POOL_ID = "local"
"""The pool a local stack's agents join."""

BROKER_KEY_PREFIX = "batchyard:"
"""Broker key prefix given to the controller and the agents alike, so they always agree."""

SHARED_NODES_BASE = Path("/var/lib/batchyard/nodes")
"""Where a root-run stack keeps node roots when its data directory is private (e.g. under /root)."""


def reachable_by_others(directory: Path) -> bool:
    """True when every directory from `/` down to `directory` is searchable by other users."""
    return all(path.stat().st_mode & stat.S_IXOTH for path in (directory, *directory.parents) if path.exists())


@dataclass(frozen=True)
class Layout:
    """Where a local stack keeps its state under the data directory."""

    data_dir: Path

    @property
    def stack_id(self) -> str:
        """A short id of this stack, from its data directory."""
        return hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:6]

    @property
    def user_prefix(self) -> str:
        """Prefix of the OS accounts this stack's agents create, so `up` can remove exactly those."""
        return f"by{self.stack_id}"

    @property
    def nodes_dir(self) -> Path:
        """Parent of the agents' root directories.

        Tasks run as their own OS users when the agents run as root, and those users must
        reach their task directories; a data directory they cannot traverse (root's home
        is private) keeps its node roots under a shared base instead.
        """
        private = self.data_dir / "nodes"
        if os.geteuid() != 0 or reachable_by_others(self.data_dir):
            return private
        return SHARED_NODES_BASE / self.stack_id

    @property
    def redis_dir(self) -> Path:
        """Redis's working directory (the append-only file lives here)."""
        return self.data_dir / "redis"

    @property
    def azurite_dir(self) -> Path:
        """Azurite's blob data."""
        return self.data_dir / "azurite"

    @property
    def logs_dir(self) -> Path:
        """One log file per child."""
        return self.data_dir / "logs"

    def node_root(self, node_id: str) -> Path:
        """An agent's root directory."""
        return self.nodes_dir / node_id

    def log(self, name: str) -> Path:
        """The log file of the child called `name`."""
        return self.logs_dir / f"{name}.log"


def node_ids(count: int) -> list[str]:
    """Node ids `local-1` .. `local-N`."""
    return [f"{POOL_ID}-{index}" for index in range(1, count + 1)]


def redis_url(port: int) -> str:
    """The URL of the private Redis."""
    return f"redis://{LOOPBACK}:{port}/0"


def controller_url(port: int) -> str:
    """The URL of the controller."""
    return f"http://{LOOPBACK}:{port}"


def redis_argv(binary: str, port: int, layout: Layout) -> list[str]:
    """`redis-server` on loopback with the append-only file on and RDB snapshots off."""
    return [binary, "--bind", LOOPBACK, "--port", str(port), "--appendonly", "yes", "--save", "",
            "--dir", str(layout.redis_dir)]  # fmt: skip


def azurite_argv(binary: str, port: int, layout: Layout) -> list[str]:
    """`azurite-blob` on loopback with a data directory and without telemetry."""
    return [binary, "--blobHost", LOOPBACK, "--blobPort", str(port), "--location", str(layout.azurite_dir),
            "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]  # fmt: skip


def python_argv(module: str) -> list[str]:
    """Run one of the project's packages with this interpreter."""
    return [sys.executable, "-m", module]


def base_env() -> dict[str, str]:
    """This process's environment, with the source checkout importable when running from one."""
    env = dict(os.environ)
    root = project_root()
    if (root / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


def controller_env(
    port: int, redis_port: int, blob_port: int, credentials: Credentials, layout: Layout | None = None
) -> dict[str, str]:
    """The controller's CONTROLLER_* settings; with a layout, it starts the stack's agents (`local` provider)."""
    provider = {}
    if layout is not None:
        provider = {
            "CONTROLLER_NODE_PROVIDER": "local",
            "CONTROLLER_LOCAL_NODES_DIR": str(layout.nodes_dir),
            "CONTROLLER_LOCAL_LOGS_DIR": str(layout.logs_dir),
            "CONTROLLER_LOCAL_USER_PREFIX": layout.user_prefix,
        }
    return {
        **provider,
        **base_env(),
        "CONTROLLER_HOST": LOOPBACK,
        "CONTROLLER_PORT": str(port),
        "CONTROLLER_PUBLIC_URL": controller_url(port),
        "CONTROLLER_REDIS_URL": redis_url(redis_port),
        "CONTROLLER_BROKER_KEY_PREFIX": BROKER_KEY_PREFIX,
        "CONTROLLER_ACCOUNT_NAME": credentials.account_name,
        "CONTROLLER_ACCOUNT_KEY": credentials.account_key,
        "CONTROLLER_NODE_SECRET": credentials.node_secret,
        "CONTROLLER_AUTO_STORAGE_CONNECTION_STRING": connection_string(blob_port),
    }


@dataclass(frozen=True)
class AgentSpec:
    """One local agent: its node id, slots and ports."""

    node_id: str
    slots: int
    file_server_port: int


def agent_env(agent: AgentSpec, layout: Layout, controller_port: int, redis_port: int, secret: str) -> dict[str, str]:
    """An agent's NODEAGENT_* settings."""
    return {
        **base_env(),
        "NODEAGENT_NODE_ID": agent.node_id,
        "NODEAGENT_POOL_ID": POOL_ID,
        "NODEAGENT_ROOT_DIR": str(layout.node_root(agent.node_id)),
        "NODEAGENT_BROKER_URL": redis_url(redis_port),
        "NODEAGENT_BROKER_KEY_PREFIX": BROKER_KEY_PREFIX,
        "NODEAGENT_CONTROLLER_URL": controller_url(controller_port),
        "NODEAGENT_NODE_SECRET": secret,
        "NODEAGENT_TASK_SLOTS": str(agent.slots),
        "NODEAGENT_FILE_SERVER_HOST": LOOPBACK,
        "NODEAGENT_FILE_SERVER_PORT": str(agent.file_server_port),
        "NODEAGENT_ADVERTISE_HOST": LOOPBACK,
        "NODEAGENT_USER_PREFIX": layout.user_prefix,
    }


def pool_body(agents: int, slots: int) -> dict[str, object]:
    """The Add Pool body for the local pool."""
    return {
        "id": POOL_ID,
        "vmSize": "standard_d2s_v3",
        "virtualMachineConfiguration": {
            "imageReference": HOST_IMAGE["imageReference"],
            "nodeAgentSKUId": HOST_IMAGE["nodeAgentSKUId"],
        },
        "taskSlotsPerNode": slots,
        "targetDedicatedNodes": agents,
    }
