"""Finding the programs a local stack runs: `redis-server` and Azurite's `azurite-blob`."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from batchyard import procs

log = logging.getLogger(__name__)

AZURITE_VERSION = "3.35.0"
"""The newest Azurite that runs on Node.js 20; package.json pins the same version."""

AZURITE_BIN = Path("node_modules") / ".bin" / "azurite-blob"
"""Where npm puts the blob-only Azurite entry point, relative to an install prefix."""

NPM_TIMEOUT_SECONDS = 600.0
"""Longest a first-use `npm install` of Azurite may take."""


class ToolMissing(Exception):
    """A program the stack needs is not installed; the message says how to install it."""


def project_root() -> Path:
    """The source checkout this package was loaded from (where package.json and node_modules live)."""
    return Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """The per-user directory where Azurite is installed when no other copy is found."""
    return Path.home() / ".cache" / "batchyard" / "azurite"


def find_redis_server() -> str:
    """The path of `redis-server` on PATH."""
    found = shutil.which("redis-server")
    if found is None:
        raise ToolMissing("redis-server was not found on PATH; install it with: apt-get install redis-server")
    return found


def find_azurite(root: Path | None = None, cache_dir: Path | None = None, install: bool = True) -> str:
    """`azurite-blob` from the checkout's node_modules, else PATH, else the user cache (installed on first use)."""
    local = (root or project_root()) / AZURITE_BIN
    if local.is_file():
        return str(local)
    on_path = shutil.which("azurite-blob")
    if on_path is not None:
        return on_path
    cache = cache_dir or default_cache_dir()
    cached = cache / AZURITE_BIN
    if not cached.is_file():
        if not install:
            raise ToolMissing(f"azurite-blob was not found; install it with: npm install azurite@{AZURITE_VERSION}")
        install_azurite(cache)
    return str(cached)


def install_azurite(cache: Path) -> None:
    """Install the pinned Azurite into `cache` with npm."""
    npm = shutil.which("npm")
    if npm is None:
        raise ToolMissing("Azurite needs Node.js and npm; install them with: apt-get install nodejs npm")
    log.info("installing Azurite %s into %s (first use only)", AZURITE_VERSION, cache)
    cache.mkdir(parents=True, exist_ok=True)
    argv = [npm, "install", "--prefix", str(cache), f"azurite@{AZURITE_VERSION}", "--no-audit", "--no-fund"]
    result = procs.run(argv, timeout=NPM_TIMEOUT_SECONDS)
    if result.returncode != 0 or not (cache / AZURITE_BIN).is_file():
        output = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise ToolMissing(f"npm could not install azurite@{AZURITE_VERSION} into {cache}: " + " | ".join(output))
