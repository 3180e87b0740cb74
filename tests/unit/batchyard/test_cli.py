"""The command line: flags, the agent's pass-through, and one-line errors before anything starts."""

from __future__ import annotations

import fcntl
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard import cli
from batchyard.ports import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port with a listener on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_up_defaults() -> None:
    # When `up` is parsed without flags / Then the documented defaults apply
    args = cli.build_parser().parse_args(["up"])
    assert (args.port, args.blob_port, args.redis_port, args.agents, args.slots) == (8080, 10000, 0, 2, 4)
    assert args.data_dir == Path("~/.batchyard")


def test_agents_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    # When `up --agents 0` is parsed / Then argparse refuses it
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["up", "--agents", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_agent_flags_are_passed_through() -> None:
    # When `agent` is parsed with its flags / Then the agent gets the same flags
    args = cli.build_parser().parse_args(["agent", "--pool", "p1", "--slots", "8", "--root-dir", "/srv/n"])
    assert cli.agent_argv(args) == ["--pool", "p1", "--slots", "8", "--root-dir", "/srv/n"]


@pytest.mark.parametrize("flag", ["--port", "--blob-port", "--redis-port"])
def test_taken_port_is_one_line_and_exit_2(
    flag: str, taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a port that is taken
    ports = {"--port": free_port(), "--blob-port": free_port(), "--redis-port": free_port(), flag: taken_port}
    argv = ["up", "--data-dir", str(tmp_path)] + [str(part) for item in ports.items() for part in item]
    # When `up` is run on it
    code = cli.main(argv)
    # Then it exits 2 with one line naming the port, and starts nothing
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(taken_port) in err and flag in err
    assert not (tmp_path / "logs" / "redis.log").exists()


def test_missing_redis_server_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no redis-server on PATH
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    # When `up` is run
    code = cli.main(["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()),
                     "--blob-port", str(free_port())])  # fmt: skip
    # Then it exits non-zero with one line saying how to install it
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().count("\n") == 0 and "apt-get install redis-server" in err


def test_up_restores_signal_handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the test process's own handlers
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    # When `up` runs and fails early / Then the handlers are as they were
    cli.main(["up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), "--blob-port", str(free_port())])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_data_dir_in_use_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a data directory locked by a running `up`
    tmp_path.mkdir(exist_ok=True)
    with (tmp_path / "up.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # When another `up` uses it
        code = cli.main(["up", "--data-dir", str(tmp_path), "--port", str(free_port()), "--blob-port",
                         str(free_port())])  # fmt: skip
    # Then it exits 2 with one line naming the directory
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and str(tmp_path) in err
