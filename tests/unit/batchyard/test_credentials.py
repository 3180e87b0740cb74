"""Credentials are generated once per data directory, kept private, and reused."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

from batchyard.credentials import ACCOUNT_NAME, FILE_NAME, KEY_BYTES, load_or_create


def test_first_use_creates_a_random_64_byte_key(tmp_path: Path) -> None:
    # Given an empty data directory / When credentials are loaded
    credentials = load_or_create(tmp_path)
    # Then the account is `batchyard` with a 64-byte base64 key and a node secret
    assert credentials.account_name == ACCOUNT_NAME
    assert len(base64.b64decode(credentials.account_key, validate=True)) == KEY_BYTES
    assert credentials.node_secret


def test_credentials_file_is_owner_only(tmp_path: Path) -> None:
    # Given credentials created in a data directory
    load_or_create(tmp_path)
    # Then the file is readable and writable by its owner only
    assert stat.S_IMODE((tmp_path / FILE_NAME).stat().st_mode) == 0o600


def test_second_load_returns_the_stored_credentials(tmp_path: Path) -> None:
    # Given credentials created once
    first = load_or_create(tmp_path)
    # When they are loaded again
    second = load_or_create(tmp_path)
    # Then they are the same
    assert second == first


def test_each_data_directory_gets_its_own_key(tmp_path: Path) -> None:
    # Given two data directories / Then their keys differ
    assert load_or_create(tmp_path / "a").account_key != load_or_create(tmp_path / "b").account_key
