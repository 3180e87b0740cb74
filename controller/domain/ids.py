"""Identifiers: the rules Azure applies to ids, and the case-insensitive keys derived from them."""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64
_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid job, task or pool id; None when it is."""
    if not value:
        return "The id must not be empty."
    if len(value) > MAX_ID_LENGTH:
        return f"The id must be at most {MAX_ID_LENGTH} characters long."
    if not _ID.match(value):
        return "The id may contain only letters, digits, hyphens and underscores."
    return None


def key_of(value: str) -> str:
    """The case-insensitive key of an id (ids are case-preserving, unique ignoring case)."""
    return value.lower()
