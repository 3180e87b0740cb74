"""Routes node agents call: claim, report, heartbeat (node-signed, not Shared Key)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from controller.api.common import context, param
from controller.api.responses import json_response
from controller.api.validation import parse_model
from controller.services import agents, jobtasks
from nodeagent.messages import ClaimBatch, Coordinated, JobTaskReport, NodeHeartbeat, ReportBatch


async def claims(request: Request) -> Response:
    """POST /agent/v1/nodes/{nodeId}/claims: take offered attempts."""
    body = parse_model(await request.body(), ClaimBatch)
    answer = await agents.claim_all(context(request), param(request, "node_id"), body.attempt_ids)
    return json_response(answer.model_dump(mode="json"))


async def reports(request: Request) -> Response:
    """POST /agent/v1/nodes/{nodeId}/reports: attempts' outcomes, answered with the next attempts to run."""
    body = parse_model(await request.body(), ReportBatch)
    answer = await agents.report_all(context(request), param(request, "node_id"), body)
    return json_response(answer.model_dump(mode="json"))


async def heartbeat(request: Request) -> Response:
    """POST /agent/v1/nodes/{nodeId}/heartbeat."""
    body = parse_model(await request.body(), NodeHeartbeat)
    answer = await agents.heartbeat(context(request), param(request, "node_id"), body)
    return json_response(answer.model_dump(mode="json"))


async def job_task(request: Request) -> Response:
    """POST /agent/v1/nodes/{nodeId}/jobtasks: a job preparation or release report."""
    body = parse_model(await request.body(), JobTaskReport)
    await jobtasks.record_report(context(request), param(request, "node_id"), body)
    return Response(status_code=204)


async def coordinated(request: Request) -> Response:
    """POST /agent/v1/attempts/{attemptId}/coordinated: an instance's coordination command ended."""
    body = parse_model(await request.body(), Coordinated)
    await agents.coordinated(context(request), param(request, "attempt_id"), body)
    return Response(status_code=204)


async def gang(request: Request) -> Response:
    """POST /agent/v1/attempts/{attemptId}/gang: whether every instance of the primary's task coordinated."""
    answer = await agents.gang(context(request), param(request, "attempt_id"))
    return json_response(answer.model_dump(mode="json"))
