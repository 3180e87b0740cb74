"""A small Shared Key-signed client for the Batch REST API, signing exactly as the official SDKs do."""

from __future__ import annotations

import email.utils
import json
from typing import Any

import httpx

from controller.sharedkey import authorization, string_to_sign

API_VERSION = "2025-06-01"
"""The api-version every request carries."""

CONTENT_TYPE = "application/json; odata=minimalmetadata"
"""The content type the current SDK sends."""


class BatchClient:
    """Signed requests to one Batch account endpoint."""

    def __init__(
        self,
        url: str,
        account_name: str,
        account_key: str,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Remember the endpoint and credentials; no connection is made yet."""
        self.url = url.rstrip("/")
        self.account_name = account_name
        self._account_key = account_key
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> BatchClient:
        """Use as a context manager that closes the connection pool."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the connection pool."""
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one signed request; `body` is sent as JSON, or `content` as raw bytes, with extra `headers`
        (such as `If-Match`) signed too."""
        query = {"api-version": API_VERSION, **(params or {})}
        if content is None and body is not None:
            content = json.dumps(body).encode()
        headers = {"content-type": CONTENT_TYPE, "ocp-date": email.utils.formatdate(usegmt=True), **(headers or {})}
        request = self._http.build_request(method, self.url + path, params=query, content=content, headers=headers)
        request.headers["authorization"] = self._authorization(request)
        return self._http.send(request)

    def _authorization(self, request: httpx.Request) -> str:
        """The Authorization header for a built request, over the headers and raw path as they will be sent."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        raw_path = request.url.raw_path.decode("ascii").split("?", 1)[0]
        query = request.url.query.decode("ascii")
        text = string_to_sign(request.method, raw_path, query, headers, self.account_name)
        return authorization(self.account_name, self._account_key, text)

    def get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """A signed GET."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        """A signed POST with a JSON body."""
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> httpx.Response:
        """A signed DELETE."""
        return self.request("DELETE", path)
