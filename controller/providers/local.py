"""The `local` node provider: agents as processes on this machine, started by the scheduler leader.

The only module of the controller that starts processes. Each agent runs in
its own session and outlives a crash of the controller that started it (its
tasks keep running; a new leader adopts it through its pid file). A graceful
controller shutdown stops the agents it knows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from controller.render import Record
from controller.settings import ControllerSettings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 15.0
PID_DIR = ".agents"


def pid_dir(nodes_dir: Path) -> Path:
    """Where the provider records which process runs which node."""
    return nodes_dir / PID_DIR


def running_agent(pid_file: Path) -> psutil.Process | None:
    """The live process a pid file names, if it is still the one that was recorded (not a reused pid)."""
    try:
        pid_text, created_text = pid_file.read_text().split()
        process = psutil.Process(int(pid_text))
        if abs(process.create_time() - float(created_text)) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def stop_process(process: psutil.Process, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM an agent, then SIGKILL its whole session after the grace period."""
    with contextlib.suppress(psutil.Error):
        process.terminate()
        try:
            process.wait(timeout=grace)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def stop_recorded(nodes_dir: Path) -> list[int]:
    """Stop every agent recorded under `nodes_dir` that still runs; their pids."""
    stopped = []
    for pid_file in sorted(pid_dir(nodes_dir).glob("*.pid")):
        process = running_agent(pid_file)
        if process is not None:
            stop_process(process)
            stopped.append(process.pid)
        pid_file.unlink(missing_ok=True)
    return stopped


class LocalProvider:
    """Starts `python -m nodeagent` for each node a pool needs, and adopts agents a previous leader started."""

    name = "local"

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings
        self.nodes_dir = Path(settings.local_nodes_dir).expanduser()

    def _pid_file(self, node_id: str) -> Path:
        return pid_dir(self.nodes_dir) / f"{node_id}.pid"

    def _env(self, pool: Record, node_id: str) -> dict[str, str]:
        settings = self.settings
        slots = json.loads(pool["spec"]).get("taskSlotsPerNode") or 1
        return {
            **os.environ,
            "NODEAGENT_NODE_ID": node_id,
            "NODEAGENT_POOL_ID": pool["id"],
            "NODEAGENT_ROOT_DIR": str(self.nodes_dir / node_id),
            "NODEAGENT_BROKER_URL": settings.broker,
            "NODEAGENT_BROKER_KEY_PREFIX": settings.broker_key_prefix,
            "NODEAGENT_CONTROLLER_URL": settings.agent_controller_url or settings.endpoint,
            "NODEAGENT_NODE_SECRET": settings.node_secret,
            "NODEAGENT_TASK_SLOTS": str(slots),
            "NODEAGENT_FILE_SERVER_HOST": "127.0.0.1",
            "NODEAGENT_ADVERTISE_HOST": "127.0.0.1",
            "NODEAGENT_USER_PREFIX": settings.local_user_prefix,
        }

    def start(self, pool: Record, node_id: str) -> bool:
        """Start an agent process for `node_id` and record it."""
        logs = Path(self.settings.local_logs_dir).expanduser()
        logs.mkdir(parents=True, exist_ok=True)
        (self.nodes_dir / node_id).mkdir(parents=True, exist_ok=True)
        pid_dir(self.nodes_dir).mkdir(parents=True, exist_ok=True)
        with (logs / f"{node_id}.log").open("ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "nodeagent"],
                env=self._env(pool, node_id),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        created = psutil.Process(child.pid).create_time()
        self._pid_file(node_id).write_text(f"{child.pid} {created}\n")
        log.info("local provider: started node %s (pid %s) in pool %s", node_id, child.pid, pool["id"])
        return True

    def ensure(self, pool: Record, node_id: str) -> None:
        """Start the node's agent if no recorded process runs it (it crashed, or this leader is new)."""
        if running_agent(self._pid_file(node_id)) is None:
            log.warning("local provider: node %s has no running agent; starting one", node_id)
            self.start(pool, node_id)

    def stop(self, node_id: str) -> None:
        """Stop the agent of a node that left its pool."""
        process = running_agent(self._pid_file(node_id))
        if process is not None:
            stop_process(process)
        self._pid_file(node_id).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every agent this provider's nodes run (a graceful controller shutdown)."""
        started = time.monotonic()
        stopped = stop_recorded(self.nodes_dir)
        if stopped:
            log.info("local provider: stopped agents %s in %.1fs", stopped, time.monotonic() - started)
