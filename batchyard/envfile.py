"""What a user needs to reach a local stack: the Azurite connection string and the `env` file of exports."""

from __future__ import annotations

import shlex
from pathlib import Path

from batchyard.credentials import Credentials, write_private
from batchyard.ports import LOOPBACK

DEV_ACCOUNT_NAME = "devstoreaccount1"
"""Azurite's development storage account."""

DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Microsoft's published, well-known key of the development storage account (not a secret)."""

ENV_FILE_NAME = "env"
"""Where in the data directory the shell exports are written."""

ENV_NAMES = ("BATCH_ACCOUNT_URL", "BATCH_ACCOUNT_NAME", "BATCH_ACCOUNT_KEY", "AZURE_STORAGE_CONNECTION_STRING")
"""The variables the env file defines, in order."""


def blob_endpoint(blob_port: int) -> str:
    """Azurite's path-style blob endpoint for the development account."""
    return f"http://{LOOPBACK}:{blob_port}/{DEV_ACCOUNT_NAME}"


def connection_string(blob_port: int) -> str:
    """The Azure Storage connection string of the local Azurite."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint={blob_endpoint(blob_port)};"
    )


def env_values(url: str, credentials: Credentials, blob_port: int) -> dict[str, str]:
    """The env file's variables and their values."""
    values = (url, credentials.account_name, credentials.account_key, connection_string(blob_port))
    return dict(zip(ENV_NAMES, values, strict=True))


def render(values: dict[str, str]) -> str:
    """Shell `export` lines, one per variable, values quoted for sh."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def write(data_dir: Path, values: dict[str, str]) -> Path:
    """Write the env file (0600: it holds the account key) and return its path."""
    path = data_dir / ENV_FILE_NAME
    write_private(path, render(values))
    return path


def parse(text: str) -> dict[str, str]:
    """Read back `export NAME=value` lines as written by `render`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values
