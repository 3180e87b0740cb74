"""redis-server and Azurite are found where the docs say, and a missing one gets one line on how to install it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from batchyard import tools


def make_executable(path: Path) -> Path:
    """Create an empty executable file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH set to a single empty directory."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def test_missing_redis_server_says_how_to_install_it(empty_path: Path) -> None:
    # Given no redis-server on PATH / Then the error is one line naming the apt package
    with pytest.raises(tools.ToolMissing) as missing:
        tools.find_redis_server()
    assert "apt-get install redis-server" in str(missing.value)
    assert "\n" not in str(missing.value)


def test_redis_server_is_found_on_path(empty_path: Path) -> None:
    # Given redis-server on PATH / Then its path is returned
    binary = make_executable(empty_path / "redis-server")
    assert tools.find_redis_server() == str(binary)


def test_project_node_modules_wins(tmp_path: Path, empty_path: Path) -> None:
    # Given Azurite in the checkout, on PATH and in the cache
    local = make_executable(tmp_path / "checkout" / tools.AZURITE_BIN)
    make_executable(empty_path / "azurite-blob")
    make_executable(tmp_path / "cache" / tools.AZURITE_BIN)
    # Then the checkout's copy is used
    assert tools.find_azurite(tmp_path / "checkout", tmp_path / "cache") == str(local)


def test_path_comes_before_the_cache(tmp_path: Path, empty_path: Path) -> None:
    # Given Azurite on PATH and in the cache but not in the checkout / Then PATH wins
    on_path = make_executable(empty_path / "azurite-blob")
    make_executable(tmp_path / "cache" / tools.AZURITE_BIN)
    assert tools.find_azurite(tmp_path / "checkout", tmp_path / "cache") == str(on_path)


def test_cache_is_used_last(tmp_path: Path, empty_path: Path) -> None:
    # Given Azurite only in the cache / Then the cached copy is used
    cached = make_executable(tmp_path / "cache" / tools.AZURITE_BIN)
    assert tools.find_azurite(tmp_path / "checkout", tmp_path / "cache", install=False) == str(cached)


def test_missing_azurite_is_installed_into_the_cache(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no Azurite anywhere and an npm that records its arguments and creates the binary
    npm_log = tmp_path / "npm.args"
    npm = empty_path / "npm"
    npm.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        f"pathlib.Path({str(npm_log)!r}).write_text(' '.join(sys.argv[1:]))\n"
        "binary = pathlib.Path(sys.argv[3]) / 'node_modules' / '.bin' / 'azurite-blob'\n"
        "binary.parent.mkdir(parents=True)\n"
        "binary.touch()\n"
    )
    npm.chmod(0o755)
    # When Azurite is looked for
    found = tools.find_azurite(tmp_path / "checkout", tmp_path / "cache")
    # Then npm installed the pinned version into the cache, which is used
    assert found == str(tmp_path / "cache" / tools.AZURITE_BIN)
    assert npm_log.read_text().split() == [
        "install", "--prefix", str(tmp_path / "cache"), "azurite@3.35.0", "--no-audit", "--no-fund"]  # fmt: skip


def test_missing_npm_says_how_to_install_it(tmp_path: Path, empty_path: Path) -> None:
    # Given no Azurite and no npm / Then the error names the apt packages
    with pytest.raises(tools.ToolMissing, match="apt-get install nodejs npm"):
        tools.find_azurite(tmp_path / "checkout", tmp_path / "cache")


def test_checkout_pins_the_same_azurite_version() -> None:
    # Given the repository's package.json / Then it pins the version tools installs
    package_json = (tools.project_root() / "package.json").read_text()
    assert f'"azurite": "{tools.AZURITE_VERSION}"' in package_json
