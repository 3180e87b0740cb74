from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.errors import ConfigError
from nodeagent.settings import AgentSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("NODEAGENT_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = AgentSettings(node_id="n1")
    assert settings.pool_id == "local"
    assert settings.root_dir == Path.home() / ".batchyard" / "nodes" / "n1"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.controller_url == "http://127.0.0.1:8080"
    assert (settings.task_slots, settings.file_server_port, settings.heartbeat_seconds) == (4, 0, 2.0)
    assert (settings.kill_grace_seconds, settings.broker_key_prefix, settings.log_level) == (5.0, "batchyard:", "INFO")
    assert (settings.file_server_host, settings.advertise_host) == ("127.0.0.1", "127.0.0.1")


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODEAGENT_NODE_ID", "from-env")
    monkeypatch.setenv("NODEAGENT_TASK_SLOTS", "8")
    monkeypatch.setenv("NODEAGENT_ROOT_DIR", str(tmp_path))
    monkeypatch.setenv("NODEAGENT_NODE_SECRET", "s")
    settings = load_settings()
    assert (settings.node_id, settings.task_slots, settings.root_dir) == ("from-env", 8, tmp_path)


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="NODEAGENT_NODE_SECRET"):
        load_settings(node_id="n")


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODEAGENT_TASK_SLOTS", "zero")
    with pytest.raises(ConfigError, match="NODEAGENT_TASK_SLOTS"):
        load_settings(node_secret="s")


def test_secret_is_not_in_the_repr() -> None:
    assert "hunter2" not in repr(AgentSettings(node_secret="hunter2"))


def test_every_field_has_a_docstring() -> None:
    assert all(field.description for field in AgentSettings.model_fields.values())
