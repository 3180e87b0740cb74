"""The Shared Key verifier computes what the official SDK signs."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from controller import sharedkey

KEY = base64.b64encode(b"k" * 64).decode()


def _sdk_signed(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> HttpRequest:
    request = HttpRequest(method, url, content=body, headers=headers or {})
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential("acct", KEY))
    policy.on_request(PipelineRequest(request, PipelineContext(None)))
    return request


def _verify(request: HttpRequest, lowercase: bool = False) -> bool:
    parts = urlsplit(request.url)
    headers = {name.lower(): value for name, value in request.headers.items()}
    text = sharedkey.string_to_sign(request.method, parts.path, parts.query, headers, "acct", lowercase)
    expected = sharedkey.authorization("acct", KEY, text)
    return expected == request.headers["Authorization"]


def test_get_with_odata_query_and_mixed_case_parameter_name() -> None:
    # Given a list call as SDK 15 sends it, with `timeOut` spelled in mixed case
    url = "http://h/jobs/j/tasks?api-version=2025-06-01&%24filter=state%20eq%20%27completed%27&timeOut=30"
    # When the SDK signs it, Then our string to sign gives the same signature
    assert _verify(_sdk_signed("GET", url))


def test_post_with_body_and_percent_encoded_file_path() -> None:
    # Given a POST with a JSON body and a path holding an encoded slash
    request = _sdk_signed(
        "POST",
        "http://h/jobs/j/tasks/t/files/wd%2Fa%20b.txt?api-version=2025-06-01",
        body=b'{"id": "x"}',
        headers={"content-type": "application/json; odata=minimalmetadata"},
    )
    # Then the raw path and content headers sign identically
    assert _verify(request)


def test_a_different_key_does_not_verify() -> None:
    request = _sdk_signed("GET", "http://h/jobs?api-version=2025-06-01")
    parts = urlsplit(request.url)
    headers = {name.lower(): value for name, value in request.headers.items()}
    text = sharedkey.string_to_sign("GET", parts.path, parts.query, headers, "acct")
    other = base64.b64encode(b"x" * 64).decode()
    assert sharedkey.authorization("acct", other, text) != request.headers["Authorization"]


def test_parse_authorization_rejects_other_schemes() -> None:
    assert sharedkey.parse_authorization("SharedKey acct:abc=") == ("acct", "abc=")
    assert sharedkey.parse_authorization("Bearer token") is None
    assert sharedkey.parse_authorization("SharedKey acct") is None


def test_key_must_be_base64() -> None:
    assert sharedkey.is_valid_key(KEY)
    assert not sharedkey.is_valid_key("not base64!")
    assert not sharedkey.is_valid_key("")
