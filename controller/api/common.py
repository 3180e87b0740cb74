"""Helpers every route module uses: the shared context, query options, path parameters."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, cast

from starlette.requests import Request

from controller.api.odata import ListOptions, parse_options
from controller.context import Context


def context(request: Request) -> Context:
    """The controller context the app was built with."""
    return cast(Context, request.app.state.ctx)


def query(request: Request) -> dict[str, str]:
    """Query parameters with lowercase names (the service treats names case-insensitively)."""
    return {name.lower(): value for name, value in request.query_params.items()}


def list_options(request: Request) -> ListOptions:
    """The OData list options of the request."""
    return parse_options(query(request))


def param(request: Request, name: str) -> str:
    """A path parameter."""
    return str(request.path_params[name])


def in_background(request: Request, work: Coroutine[Any, Any, None] | asyncio.Task[None]) -> None:
    """Run `work` after the response; it is cancelled at shutdown if still running, and forgotten once done."""
    task = work if isinstance(work, asyncio.Task) else asyncio.create_task(work)
    running: set[asyncio.Task[None]] = request.app.state.background
    running.add(task)
    task.add_done_callback(running.discard)
