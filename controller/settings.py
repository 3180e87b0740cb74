"""The controller's settings: read once from `CONTROLLER_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.sharedkey import is_valid_key
from controller.store.redis import REPLY_TIMEOUT_SECONDS


class ControllerSettings(BaseSettings):
    """Everything the controller process needs; each field has a default."""

    model_config = SettingsConfigDict(env_prefix="CONTROLLER_", extra="ignore")

    host: str = "127.0.0.1"
    """Address the HTTP API listens on."""
    port: int = 8080
    """Port the HTTP API listens on."""
    public_url: str = ""
    """Absolute URL clients use to reach the API (odata links, `url` fields); default http://host:port."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """The state store."""
    redis_reply_timeout_seconds: float = Field(default=REPLY_TIMEOUT_SECONDS, gt=0)
    """A call to the state store that gets no reply for this long fails (503 ServerBusy) and its connection is
    replaced: a stopped or unreachable Redis makes API calls answer instead of hang. Publishing offers to the
    broker gives up after as long (the reconciler offers them again)."""
    broker_url: str = ""
    """Celery broker the agents consume; default: the state store's Redis."""
    broker_key_prefix: str = "batchyard:"
    """Prefix of every broker key (kombu global_keyprefix); must match the agents'."""
    key_prefix: str = "batchyard"
    """Prefix of every state key in Redis."""
    account_name: str = "batchyard"
    """The Batch account name clients sign requests with."""
    account_key: str = ""
    """The account's base64 Shared Key; required."""
    node_secret: str = ""
    """Secret shared with node agents for their signed calls; required."""
    auto_storage_connection_string: str = ""
    """The account's auto-storage (Azure Storage or Azurite): autoStorageContainerName files and packages."""
    applications_container: str = "applications"
    """Auto-storage container holding application packages as `<applicationId>/<version>.zip`."""
    sas_lifetime_seconds: float = Field(default=6 * 3600, gt=0)
    """Lifetime of the read SAS URLs handed to nodes for auto-storage files and packages."""
    node_provider: Literal["static", "local"] = "static"
    """`static`: nodes are machines whose agents registered themselves; `local`: the scheduler leader starts and
    stops agent processes on this machine to follow each pool's targetDedicatedNodes."""
    local_nodes_dir: str = "~/.batchyard/nodes"
    """`local` provider: parent of the agents' root directories."""
    local_logs_dir: str = "~/.batchyard/logs"
    """`local` provider: where each agent's log file goes."""
    local_user_prefix: str = "by"
    """`local` provider: prefix of the OS accounts its agents create."""
    agent_controller_url: str = ""
    """The controller URL agents started by the `local` provider call; default: the public URL."""
    task_lifetime_seconds: float = Field(default=180 * 24 * 3600, gt=0)
    """How long a task may exist before the service terminates it (Azure: 180 days)."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """How long an attempt's lease lasts without a heartbeat renewing it."""
    master_port: int = Field(default=6000, ge=1, le=65535)
    """The port AZ_BATCH_MASTER_NODE names on a multi-instance task's primary node."""
    node_timeout_seconds: float = Field(default=30.0, gt=0)
    """A node silent for this long becomes `unknown`."""
    dispatch_timeout_seconds: float = Field(default=60.0, gt=0)
    """An attempt offered but not claimed for this long is offered again."""
    scheduler_tick_seconds: float = Field(default=0.5, gt=0)
    """Longest pause between scheduler passes when nothing wakes it."""
    max_body_bytes: int = 1024 * 1024
    """Request bodies larger than this get 413 RequestBodyTooLarge."""
    log_level: str = "INFO"
    """Python logging level name."""

    @field_validator("account_key")
    @classmethod
    def _key_is_base64(cls, value: str) -> str:
        if not is_valid_key(value):
            raise ValueError("CONTROLLER_ACCOUNT_KEY must be set to a non-empty base64 string")
        return value

    @field_validator("node_secret")
    @classmethod
    def _secret_is_set(cls, value: str) -> str:
        if not value:
            raise ValueError("CONTROLLER_NODE_SECRET must be set")
        return value

    @property
    def endpoint(self) -> str:
        """The public URL without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def broker(self) -> str:
        """The broker URL in effect."""
        return self.broker_url or self.redis_url
