"""The interface every node provider implements."""

from __future__ import annotations

from typing import Protocol

from controller.render import Record


class NodeProvider(Protocol):
    """Creates nodes for a pool and takes them away again."""

    name: str

    def start(self, pool: Record, node_id: str) -> bool:
        """Start a node with this id in the pool; False when this provider cannot create nodes."""

    def ensure(self, pool: Record, node_id: str) -> None:
        """Start the node again if its process or machine is gone (no-op where not applicable)."""

    def stop(self, node_id: str) -> None:
        """Stop the node's agent (no-op where the agent leaves by itself)."""

    def close(self) -> None:
        """Stop every node this provider started in this process."""


class StaticProvider:
    """Machines join by running `batchyard agent`; nothing is created or stopped from here."""

    name = "static"

    def start(self, pool: Record, node_id: str) -> bool:
        """Static pools cannot grow on their own."""
        return False

    def ensure(self, pool: Record, node_id: str) -> None:
        """Nothing to restart."""

    def stop(self, node_id: str) -> None:
        """The agent is told to leave through its heartbeat."""

    def close(self) -> None:
        """Nothing was started."""
