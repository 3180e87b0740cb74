"""The ASGI gate every request passes: request ids, body limit, api-version and authentication.

Shared Key (Azure Batch clients) guards the public API; the node signature
guards the agent API. The body is read here, at most one byte past the limit,
and replayed to the application.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from controller import sharedkey
from controller.api.responses import error_response
from controller.domain.clock import now, parse_http_date
from controller.errors import AuthenticationFailed, BadRequest, BatchError, BodyTooLarge
from controller.settings import ControllerSettings
from nodeagent.messages import (
    AGENT_API_PREFIX,
    DATE_HEADER,
    MAX_CLOCK_SKEW_SECONDS,
    SIGNATURE_HEADER,
    node_signature,
    signatures_match,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SUPPORTED_API_VERSIONS = frozenset(
    {
        "2025-06-01",
        "2025-06-01.21.0",
        "2024-07-01.20.0",
        "2024-02-01.19.0",
        "2023-11-01.18.0",
        "2023-05-01.17.0",
    }
)
OPEN_PATHS = frozenset({"/healthz"})
MAX_SKEW = timedelta(seconds=MAX_CLOCK_SKEW_SECONDS)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


class BatchGate:
    """Pure ASGI middleware in front of the routes."""

    def __init__(self, app: ASGIApp, settings: ControllerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        headers = _headers(scope)
        send = _with_ids(send, request_id, headers)
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            body = await _read_body(receive, self.settings.max_body_bytes, headers)
            self._check(scope, headers, body)
        except BatchError as error:
            await error_response(error, request_id, self.settings.endpoint)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check(self, scope: Scope, headers: dict[str, str], body: bytes) -> None:
        path: str = scope["path"]
        if path in OPEN_PATHS:
            return
        if path.startswith(AGENT_API_PREFIX):
            self._check_node(scope, headers, body)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        _check_api_version(query)
        self._check_shared_key(scope, headers, query)

    def _check_node(self, scope: Scope, headers: dict[str, str], body: bytes) -> None:
        date = headers.get(DATE_HEADER, "")
        _check_clock(date)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        expected = node_signature(self.settings.node_secret, scope["method"], raw_path.decode("latin-1"), date, body)
        if not signatures_match(expected, headers.get(SIGNATURE_HEADER, "")):
            raise AuthenticationFailed("The node signature is not valid")

    def _check_shared_key(self, scope: Scope, headers: dict[str, str], query: str) -> None:
        parsed = sharedkey.parse_authorization(headers.get("authorization", ""))
        if parsed is None:
            raise AuthenticationFailed(
                "Server failed to authenticate the request. The Authorization header is missing or malformed.",
                values={"AuthenticationErrorDetail": "Expected: SharedKey <account>:<signature>"},
            )
        account, given = parsed
        _check_clock(headers.get("ocp-date") or headers.get("date", ""))
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        texts = [
            sharedkey.string_to_sign(scope["method"], raw_path, query, headers, account, lowercase_query_names=lower)
            for lower in (False, True)
        ]
        key = self.settings.account_key
        if account != self.settings.account_name or not any(
            signatures_match(sharedkey.signature(key, text), given) for text in texts
        ):
            log.info("shared key authentication failed for account %s on %s", account, raw_path)
            raise AuthenticationFailed(
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
                "correctly including the signature.",
                values={
                    "AuthenticationErrorDetail": f"The MAC signature found in the HTTP request is not the same as "
                    f"any computed signature. Server used following string to sign: '{texts[0]}'."
                },
            )


def _check_api_version(query: str) -> None:
    versions = [value for name, value in parse_qsl(query, keep_blank_values=True) if name.lower() == "api-version"]
    if not versions or not versions[0]:
        raise BadRequest(
            "A query parameter that's mandatory for this request is not specified.",
            code="MissingRequiredQueryParameter",
            values={"QueryParameterName": "api-version"},
        )
    if versions[0] not in SUPPORTED_API_VERSIONS:
        raise BadRequest(
            f"The specified api-version {versions[0]} is not supported.",
            code="UnsupportedRequestVersion",
            values={"QueryParameterName": "api-version"},
        )


def _check_clock(date_text: str) -> None:
    moment = parse_http_date(date_text) if date_text else None
    if moment is None:
        raise AuthenticationFailed(
            "Server failed to authenticate the request. The request date header is missing or malformed.",
            values={"AuthenticationErrorDetail": "ocp-date must be an RFC 1123 date"},
        )
    if abs(now() - moment) > MAX_SKEW:
        raise AuthenticationFailed(
            "Server failed to authenticate the request. The request time is too far from the server time.",
            values={"AuthenticationErrorDetail": "Request date is more than 15 minutes from the server time"},
        )


async def _read_body(receive: Receive, limit: int, headers: dict[str, str]) -> bytes:
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"The request body is larger than the limit of {limit} bytes.",
        values={"MaxLimit": str(limit)},
    )


def _replay(body: bytes, upstream: Receive) -> Receive:
    """Hand the buffered body to the app once, then pass through (so disconnects are still seen)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await upstream()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _with_ids(send: Send, request_id: str, headers: dict[str, str]) -> Send:
    echo = headers.get("return-client-request-id", "").lower() == "true"
    client_id = headers.get("client-request-id", "")

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"request-id", request_id.encode())]
            if echo and client_id:
                extra.append((b"client-request-id", client_id.encode("latin-1")))
            message["headers"] = list(message.get("headers", [])) + extra
        await send(message)

    return wrapped
