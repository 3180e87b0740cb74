"""Reading stored records: one entity, or a page of an index."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controller.api.odata import ListOptions, project
from controller.domain.clock import new_etag
from controller.domain.ids import key_of
from controller.errors import NotFound
from controller.render import Record
from controller.schemas.common import BatchModel
from controller.store import reads
from controller.store.wire import Wire

BATCH = 200


def new_record(body: BatchModel, entity_id: str, stamp: str) -> dict[str, str]:
    """The fields every new entity starts with: ids, the request as `spec`, state `active`, times, ETag."""
    return {
        "id": entity_id,
        "key": key_of(entity_id),
        "spec": json.dumps(body.wire()),
        "state": "active",
        "stt": stamp,
        "created": stamp,
        "modified": stamp,
        "etag": new_etag(),
    }


def changed_spec(record: Record, changes: dict[str, Any]) -> str:
    """A record's `spec` with `changes` laid over it, as stored: a change to None removes the property, and an
    emptied `metadata` is left out, as on create."""
    spec = {**json.loads(record["spec"]), **changes}
    if spec.get("metadata") == []:
        del spec["metadata"]
    return json.dumps({name: value for name, value in spec.items() if value is not None})


async def load(wire: Wire, key: str) -> Record | None:
    """One stored hash, or None when absent."""
    found = await reads.record(wire, key)
    return found or None


async def load_or_404(wire: Wire, key: str, code: str, message: str) -> Record:
    """One stored hash, or 404 with `code`."""
    record = await load(wire, key)
    if record is None or record.get("state") == "deleted":
        raise NotFound(message, code=code)
    return record


@dataclass(frozen=True)
class Page:
    """One page of a list: rendered items and the token of the next page ('' when last)."""

    items: list[dict[str, Any]]
    next_token: str


def page_of(items: list[dict[str, Any]], options: ListOptions) -> Page:
    """A page of a list held in memory: filtered, projected, and continued after the skip token's position."""
    start = int(options.skip_token) if options.skip_token.isdigit() else 0
    chosen: list[dict[str, Any]] = []
    for position in range(start, len(items)):
        if options.predicate is None or options.predicate(items[position]):
            chosen.append(project(items[position], options.select))
            if len(chosen) == options.max_results:
                return Page(chosen, str(position + 1) if position + 1 < len(items) else "")
    return Page(chosen, "")


async def page(
    wire: Wire,
    index_key: str,
    key_of: Callable[[str], str],
    render: Callable[[Record], Awaitable[dict[str, Any]] | dict[str, Any]],
    options: ListOptions,
) -> Page:
    """Walk a lexical index after the skip token, render, filter and project up to max results."""
    items: list[dict[str, Any]] = []
    after = options.skip_token
    while True:
        members = await reads.members_after(wire, index_key, after, BATCH)
        if not members:
            return Page(items, "")
        records = await reads.records(wire, [key_of(member) for member in members])
        for member, record in zip(members, records, strict=True):
            if not record:
                continue
            rendered = render(record)
            item = rendered if isinstance(rendered, dict) else await rendered
            if options.predicate is None or options.predicate(item):
                items.append(project(item, options.select))
                if len(items) == options.max_results:
                    return Page(items, member)
        after = members[-1]
