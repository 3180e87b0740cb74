"""Azure Batch Shared Key: the string to sign and its HMAC, as both SDK generations compute them.

Pure functions over already-parsed request parts, so the verifier (the HTTP
middleware) and any signing client compute exactly the same string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qs

SIGNED_STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
"""The fixed header slots of the string to sign, in order."""

SCHEME = "SharedKey"


def string_to_sign(
    method: str,
    raw_path: str,
    query_string: str,
    headers: Mapping[str, str],
    account_name: str,
    lowercase_query_names: bool = False,
) -> str:
    """Build the Shared Key string to sign; `headers` must have lowercase names."""
    slots = [_standard_header(headers, name) for name in SIGNED_STANDARD_HEADERS]
    lines = [method.upper(), *slots]
    return (
        "\n".join(lines)
        + "\n"
        + _canonical_headers(headers)
        + _canonical_resource(account_name, raw_path, query_string, lowercase_query_names)
    )


def _standard_header(headers: Mapping[str, str], name: str) -> str:
    """A fixed-slot header's value; `Date` is signed empty when `ocp-date` is present."""
    if name == "date" and headers.get("ocp-date"):
        return ""
    return headers.get(name, "")


def _canonical_headers(headers: Mapping[str, str]) -> str:
    """Every non-empty header whose name contains `ocp-`, sorted, one `name:value` line each."""
    items = sorted((name, value) for name, value in headers.items() if "ocp-" in name and value)
    return "".join(f"{name}:{value}\n" for name, value in items)


def _canonical_resource(account_name: str, raw_path: str, query_string: str, lowercase_names: bool) -> str:
    """`/account/path` then one `\\nname:value` per query parameter with a non-empty first value."""
    resource = f"/{account_name}{raw_path}"
    parsed = parse_qs(query_string, keep_blank_values=True)
    if lowercase_names:
        parsed = {name.lower(): values for name, values in parsed.items()}
    for name in sorted(parsed):
        value = parsed[name][0]
        if value:
            resource += f"\n{name}:{value}"
    return resource


def signature(account_key: str, text: str) -> str:
    """Base64 HMAC-SHA256 of `text` keyed with the base64-decoded account key."""
    key = base64.b64decode(account_key)
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()).decode()


def authorization(account_name: str, account_key: str, text: str) -> str:
    """The `Authorization` header value for a string to sign."""
    return f"{SCHEME} {account_name}:{signature(account_key, text)}"


def parse_authorization(value: str) -> tuple[str, str] | None:
    """Split `SharedKey account:signature` into its parts; None when malformed."""
    scheme, _, credentials = value.partition(" ")
    account, sep, given = credentials.strip().partition(":")
    if scheme != SCHEME or not sep or not account or not given:
        return None
    return account, given


def is_valid_key(account_key: str) -> bool:
    """True when the key is non-empty valid base64, as the SDKs require."""
    try:
        return bool(base64.b64decode(account_key, validate=True))
    except (binascii.Error, ValueError):
        return False
