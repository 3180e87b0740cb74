"""The REST client signs requests the way the controller verifies them."""

from __future__ import annotations

import base64
import json

import httpx

from batchyard.client import API_VERSION, CONTENT_TYPE, BatchClient
from controller.sharedkey import authorization, string_to_sign

KEY = base64.b64encode(b"k" * 64).decode()


def send(method: str, path: str, body: object = None) -> httpx.Request:
    """Send one request through a client whose transport records it and answers 200."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with BatchClient("http://127.0.0.1:8080/", "acct", KEY, transport=httpx.MockTransport(handler)) as client:
        client.request(method, path, body=body)
    return seen[0]


def expected_authorization(request: httpx.Request) -> str:
    """What a verifier computes from the request as received."""
    headers = {name.lower(): value for name, value in request.headers.items() if name.lower() != "authorization"}
    raw_path = request.url.raw_path.decode().split("?")[0]
    text = string_to_sign(request.method, raw_path, request.url.query.decode(), headers, "acct")
    return authorization("acct", KEY, text)


def test_post_carries_a_valid_signature() -> None:
    # When a job is posted / Then the signature matches what the verifier computes
    request = send("POST", "/jobs", {"id": "j1", "poolInfo": {"poolId": "local"}})
    assert request.headers["authorization"] == expected_authorization(request)


def test_get_with_encoded_path_carries_a_valid_signature() -> None:
    # When a path with an encoded slash is fetched / Then the signature covers the raw path
    request = send("GET", "/jobs/j1/tasks/t1/files/wd%2Fa.txt")
    assert request.url.raw_path.startswith(b"/jobs/j1/tasks/t1/files/wd%2Fa.txt")
    assert request.headers["authorization"] == expected_authorization(request)


def test_request_has_api_version_date_and_content_type() -> None:
    # When a request is sent / Then it has the api-version, ocp-date and the SDK's content type
    request = send("POST", "/pools", {"id": "local"})
    assert request.url.params["api-version"] == API_VERSION
    assert request.headers["ocp-date"].endswith("GMT")
    assert request.headers["content-type"] == CONTENT_TYPE
    assert json.loads(request.content) == {"id": "local"}
