"""`python -m nodeagent`: load settings, configure logging and run the node's Celery worker.

After a `reboot` command the process re-executes itself in place (same pid, arguments and environment),
so `batchyard up` and systemd keep supervising the same process; the new agent registers with a new boot
time and runs the start task again. After `leave` it exits 0, which a unit with `Restart=on-failure` does
not restart.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any

from nodeagent.agent import AgentRuntime
from nodeagent.celery_app import create_app, worker_argv
from nodeagent.errors import ConfigError
from nodeagent.messages import NodeCommand, RedactingFormatter
from nodeagent.settings import AgentSettings, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Format of the agent's log lines."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line overrides of the NODEAGENT_* settings."""
    parser = argparse.ArgumentParser(prog="nodeagent", description="Run a Batchyard node agent.")
    parser.add_argument("--pool", help="pool id (NODEAGENT_POOL_ID)")
    parser.add_argument("--node-id", help="node id (NODEAGENT_NODE_ID)")
    parser.add_argument("--slots", type=int, help="task slots (NODEAGENT_TASK_SLOTS)")
    parser.add_argument("--root-dir", type=Path, help="node root directory (NODEAGENT_ROOT_DIR)")
    return parser.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line sets."""
    given = {"pool_id": args.pool, "node_id": args.node_id, "task_slots": args.slots, "root_dir": args.root_dir}
    return {name: value for name, value in given.items() if value is not None}


def configure_logging(level: str) -> None:
    """Log to stderr with SAS signatures redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_worker(settings: AgentSettings) -> tuple[int, NodeCommand | None]:
    """Run the Celery worker for this node until it shuts down; its exit code and the command that stopped it."""
    runtime = AgentRuntime(settings)
    runtime.layout.create()
    atexit.register(runtime.running.kill_now)
    app = create_app(settings, runtime)
    code = 0
    try:
        app.worker_main(worker_argv(settings))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        runtime.stop()
    return code, runtime.exit_action


def restart_argv(argv: list[str]) -> list[str]:
    """The command line that runs this agent again with the same arguments."""
    return [sys.executable, "-m", "nodeagent", *argv]


def reexecute(argv: list[str]) -> None:
    """Replace this process with a fresh agent (the `reboot` command); never returns."""
    logging.getLogger("nodeagent").warning("rebooting: the agent starts again in this process")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    command = restart_argv(argv)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m nodeagent` and `batchyard agent`; the process exit code."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    try:
        settings = load_settings(**overrides(args))
    except ConfigError as exc:
        print(f"nodeagent: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        code, command = run_worker(settings)
    except OSError as exc:
        logging.getLogger("nodeagent").error("node %s: agent failed to start: %s", settings.node_id, exc)
        return 1
    if command == "reboot":
        reexecute(given)
    if command == "leave":
        logging.getLogger("nodeagent").warning("node %s: removed from its pool; exiting", settings.node_id)
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
