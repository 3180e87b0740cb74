"""The local account's credentials: generated once per data directory and kept in `credentials.json` (0600)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

ACCOUNT_NAME = "batchyard"
"""The Batch account name of a local stack."""

KEY_BYTES = 64
"""Length of a generated account key before base64, as Azure's keys are."""

FILE_NAME = "credentials.json"
"""Where in the data directory the credentials live."""


@dataclass(frozen=True)
class Credentials:
    """The Batch account name and key clients sign with, and the secret the agents share with the controller."""

    account_name: str
    account_key: str
    node_secret: str


def generate() -> Credentials:
    """Fresh random credentials."""
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    return Credentials(account_name=ACCOUNT_NAME, account_key=key, node_secret=secrets.token_urlsafe(32))


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, replacing the file atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def load_or_create(data_dir: Path) -> Credentials:
    """The credentials stored in `data_dir`, creating and storing new ones on first use."""
    path = data_dir / FILE_NAME
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            account_name=str(stored["account_name"]),
            account_key=str(stored["account_key"]),
            node_secret=str(stored["node_secret"]),
        )
    created = generate()
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(asdict(created), indent=2) + "\n")
    return created
