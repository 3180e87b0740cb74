"""The `batchyard` command: `up`, `controller`, `agent` and `package add`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DESCRIPTION = "Batchyard: a self-hosted batch service that speaks the Azure Batch data-plane REST API."
"""What `batchyard --help` says first."""

AGENT_FLAGS = ("--pool", "--node-id", "--slots", "--root-dir")
"""Flags `batchyard agent` hands on to the node agent unchanged."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its three subcommands."""
    parser = argparse.ArgumentParser(prog="batchyard", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run Redis, Azurite, the controller and local agents in the foreground")
    up.add_argument("--data-dir", type=Path, default=Path("~/.batchyard"), help="state, logs and credentials")
    up.add_argument("--port", type=int, default=8080, help="the controller's port (default 8080)")
    up.add_argument("--blob-port", type=int, default=10000, help="Azurite's blob port (default 10000)")
    up.add_argument("--redis-port", type=int, default=0, help="Redis's port (default: any free port)")
    up.add_argument("--agents", type=_positive, default=2, help="how many local agents (default 2)")
    up.add_argument("--slots", type=_positive, default=4, help="task slots per agent (default 4)")
    commands.add_parser("controller", help="run the controller, configured by CONTROLLER_* variables")
    agent = commands.add_parser("agent", help="run a node agent, configured by NODEAGENT_* variables and flags")
    for flag in AGENT_FLAGS:
        agent.add_argument(flag, help="passed to the node agent")
    _add_package_parser(commands)
    return parser


def _add_package_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`batchyard package add APP VERSION ZIP [--default]`."""
    package = commands.add_parser("package", help="application packages in the account's auto-storage")
    actions = package.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="upload a zip as a version of an application")
    add.add_argument("application_id")
    add.add_argument("version")
    add.add_argument("archive", type=Path, help="the package, a .zip file")
    add.add_argument("--default", action="store_true", help="make this the application's default version")
    add.add_argument(
        "--connection-string",
        default=os.environ.get("AZURE_STORAGE_CONNECTION_STRING", ""),
        help="auto-storage connection string (default: $AZURE_STORAGE_CONNECTION_STRING, as `up` writes it)",
    )


def _positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def agent_argv(args: argparse.Namespace) -> list[str]:
    """The node agent's own argv from the flags given to `batchyard agent`."""
    argv: list[str] = []
    for flag in AGENT_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            argv += [flag, value]
    return argv


def run_up(args: argparse.Namespace) -> int:
    """`batchyard up`."""
    from batchyard.up import UpOptions, run

    options = UpOptions(
        data_dir=args.data_dir.expanduser().resolve(),
        port=args.port,
        blob_port=args.blob_port,
        redis_port=args.redis_port,
        agents=args.agents,
        slots=args.slots,
    )
    return run(options)


def run_controller() -> int:
    """`batchyard controller`: the controller's own entry point."""
    from controller.__main__ import main as controller_main

    return controller_main([])


def run_agent(args: argparse.Namespace) -> int:
    """`batchyard agent`: the node agent's own entry point."""
    from nodeagent.__main__ import main as agent_main

    return agent_main(agent_argv(args))


def run_package(args: argparse.Namespace) -> int:
    """`batchyard package add`."""
    from batchyard.packages import PackageError, upload

    if not args.connection_string:
        print("batchyard: no connection string; source <data-dir>/env or pass --connection-string", file=sys.stderr)
        return 2
    try:
        name = upload(args.connection_string, args.application_id, args.version, args.archive, args.default)
    except (PackageError, OSError) as error:
        print(f"batchyard: {error}", file=sys.stderr)
        return 2
    print(f"uploaded {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the subcommand; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "controller":
        return run_controller()
    if args.command == "package":
        return run_package(args)
    if args.command == "agent":
        return run_agent(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s batchyard %(levelname)s %(message)s")
    # One line per readiness probe would drown the useful lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_up(args)


if __name__ == "__main__":
    raise SystemExit(main())
