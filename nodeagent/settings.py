"""Typed agent settings, read once from `NODEAGENT_*` environment variables."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from nodeagent.errors import ConfigError

SECRET_VARIABLE = "NODEAGENT_NODE_SECRET"
"""Environment variable that carries the shared node secret."""


def default_root_dir(node_id: str) -> Path:
    """Default node root: `~/.batchyard/nodes/<node_id>`."""
    return Path.home() / ".batchyard" / "nodes" / node_id


class AgentSettings(BaseSettings):
    """Settings of one node agent process."""

    model_config = SettingsConfigDict(
        env_prefix="NODEAGENT_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    node_id: str = Field(default_factory=socket.gethostname)
    """Id of this compute node (default: the host name)."""

    pool_id: str = "local"
    """Id of the pool this node belongs to."""

    root_dir: Path = Field(default_factory=lambda data: default_root_dir(data["node_id"]))
    """Node root directory (AZ_BATCH_NODE_ROOT_DIR); default `~/.batchyard/nodes/<node_id>`."""

    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker URL (Redis)."""

    controller_url: str = "http://127.0.0.1:8080"
    """Base URL of the controller that the agent claims, reports and heartbeats to."""

    node_secret: str = Field(default="", repr=False)
    """Shared secret that signs agent <-> controller calls and file-server requests; required."""

    task_slots: int = Field(default=4, ge=1)
    """Number of task slots, which is also the worker's thread concurrency."""

    file_server_host: str = "127.0.0.1"
    """Address the file server binds to."""

    file_server_port: int = Field(default=0, ge=0, le=65535)
    """Port the file server binds to (0 picks a free port)."""

    advertise_host: str = "127.0.0.1"
    """Host put in the heartbeat's file_server_url and ip_address."""

    heartbeat_seconds: float = Field(default=2.0, gt=0)
    """Seconds between two heartbeats."""

    heartbeat_timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest one heartbeat call may take; keep it well below the lease so a hung call cannot delay the next."""

    fence_seconds: float = Field(default=20.0, gt=0)
    """Fencing window until the controller has announced its lease length: with no heartbeat answered for
    this long, the agent kills its running attempts (after that, the window follows the announced lease)."""

    visibility_timeout_seconds: float = Field(default=600.0, gt=0)
    """Broker redelivery delay of a message taken but never acknowledged (only unclaimed dispatches; see celery_app)."""

    kill_grace_seconds: float = Field(default=5.0, ge=0)
    """Seconds between SIGTERM and SIGKILL when a task's process group is stopped."""

    broker_key_prefix: str = "batchyard:"
    """Kombu global key prefix of every broker key (the controller uses the same default)."""

    log_level: str = "INFO"
    """Log level of the agent's own loggers."""

    user_prefix: str = Field(default="by", pattern=r"^[a-z][a-z0-9]{0,15}$")
    """Prefix of the OS accounts the agent creates for task identities (`byt-...`, `bypool-nonadmin`)."""

    retention_sweep_seconds: float = Field(default=60.0, gt=0)
    """Seconds between two passes that delete task directories whose retention time is over."""

    cgroups: Literal["auto", "v2", "v1", "off"] = "auto"
    """Per-attempt cgroups: detect v2 then v1 at start (auto), force one version, or never use them (off)."""


def load_settings(**overrides: Any) -> AgentSettings:
    """Read the settings from the environment plus overrides; fail with a message naming the bad variable."""
    try:
        settings = AgentSettings(**overrides)
    except ValidationError as exc:
        names = ", ".join(f"NODEAGENT_{'_'.join(str(p) for p in err['loc']).upper()}" for err in exc.errors())
        raise ConfigError(f"invalid agent settings: {names}: {exc}") from exc
    if not settings.node_secret:
        raise ConfigError(f"{SECRET_VARIABLE} must be set to the node secret shared with the controller")
    return settings


def agent_path() -> str:
    """The agent's own PATH, the base of every task's PATH."""
    return os.environ.get("PATH", os.defpath)
