"""Azure-shaped responses: JSON content type, entity headers, lists with odata.nextLink, errors."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from controller.api.odata import ListOptions
from controller.domain.clock import http_date, iso, now, parse_iso
from controller.errors import BatchError
from controller.render import Record
from controller.services.records import Page

JSON_TYPE = "application/json;odata=minimalmetadata"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the service's content type."""
    return Response(json.dumps(body), status_code=status, headers=headers, media_type=JSON_TYPE)


def entity_headers(record: Record, url: str) -> dict[str, str]:
    """ETag, Last-Modified and DataServiceId of one entity."""
    return {"ETag": record["etag"], "Last-Modified": http_date(parse_iso(record["modified"])), "DataServiceId": url}


def created(record: Record, url: str) -> Response:
    """201 with an empty body and the entity headers, as create calls answer."""
    return Response(status_code=201, headers={**entity_headers(record, url), "Location": url})


def accepted(record: Record, url: str) -> Response:
    """202 with the entity headers, as long-running actions answer."""
    return Response(status_code=202, headers=entity_headers(record, url))


def entity(body: dict[str, Any], record: Record, url: str, endpoint: str, metadata: str) -> Response:
    """200 with one entity's JSON and its headers."""
    payload = {"odata.metadata": f"{endpoint}/$metadata#{metadata}/@Element", **body}
    return json_response(payload, headers=entity_headers(record, url))


def listing(request: Request, page: Page, options: ListOptions, endpoint: str, metadata: str) -> Response:
    """A list body, with a nextLink carrying the options when there is more."""
    body: dict[str, Any] = {"odata.metadata": f"{endpoint}/$metadata#{metadata}", "value": page.items}
    if page.next_token:
        body["odata.nextLink"] = _next_link(request, page.next_token, options, endpoint)
    return json_response(body)


def _next_link(request: Request, token: str, options: ListOptions, endpoint: str) -> str:
    query = {"api-version": request.query_params.get("api-version", ""), "maxresults": str(options.max_results)}
    if options.filter_text:
        query["$filter"] = options.filter_text
    if options.select:
        query["$select"] = ",".join(options.select)
    query["$skiptoken"] = token
    return f"{endpoint}{request.url.path}?{urlencode(query)}"


def error_body(error: BatchError, request_id: str, endpoint: str) -> dict[str, Any]:
    """The BatchError JSON shape."""
    body: dict[str, Any] = {
        "odata.metadata": f"{endpoint}/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
        "code": error.code,
        "message": {"lang": "en-US", "value": f"{error.message}\nRequestId:{request_id}\nTime:{iso(now())}"},
    }
    if error.values:
        body["values"] = [{"key": key, "value": value} for key, value in error.values.items()]
    return body


def error_response(error: BatchError, request_id: str, endpoint: str) -> Response:
    """An error response; HEAD responses carry no body."""
    return json_response(error_body(error, request_id, endpoint), status=error.status)
