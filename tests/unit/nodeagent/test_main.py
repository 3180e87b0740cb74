from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.__main__ import main, overrides, parse_args


def test_cli_overrides() -> None:
    args = parse_args(["--pool", "p1", "--node-id", "n1", "--slots", "3", "--root-dir", "/tmp/r"])
    assert overrides(args) == {"pool_id": "p1", "node_id": "n1", "task_slots": 3, "root_dir": Path("/tmp/r")}
    assert overrides(parse_args([])) == {}


def test_missing_secret_fails_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NODEAGENT_NODE_SECRET", raising=False)
    assert main(["--node-id", "n1"]) == 2
    assert "NODEAGENT_NODE_SECRET" in capsys.readouterr().err
