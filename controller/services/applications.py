"""Application packages: the catalogue in auto-storage, and resolving a task's or pool's references."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from controller.context import Context
from controller.errors import Conflict, NotFound, ServerBusy
from controller.storage import PackageVersion
from nodeagent.messages import ApplicationPackageSpec


async def catalogue(ctx: Context) -> dict[str, list[PackageVersion]]:
    """Every application id (lowercase) with its versions, read from auto-storage."""
    try:
        versions = await asyncio.to_thread(ctx.storage.package_versions)
    except ConnectionError as error:
        raise ServerBusy(str(error)) from None
    by_app: dict[str, list[PackageVersion]] = defaultdict(list)
    for version in versions:
        by_app[version.application_id.lower()].append(version)
    return dict(by_app)


def render_application(versions: list[PackageVersion]) -> dict[str, Any]:
    """A BatchApplication."""
    application_id = versions[0].application_id
    return {"id": application_id, "displayName": application_id, "versions": sorted(v.version for v in versions)}


async def get_application(ctx: Context, application_id: str) -> dict[str, Any]:
    """One application; 404 ApplicationNotFound."""
    versions = (await catalogue(ctx)).get(application_id.lower())
    if not versions:
        raise NotFound(f"The specified application does not exist: {application_id}", code="ApplicationNotFound")
    return render_application(versions)


def _pick(versions: list[PackageVersion], wanted: str | None) -> PackageVersion | None:
    for version in versions:
        if (wanted is None and version.is_default) or (wanted is not None and version.version == wanted):
            return version
    return None


def resolve(
    references: list[dict[str, Any]], known: dict[str, list[PackageVersion]]
) -> tuple[list[PackageVersion], list[str]]:
    """The package version each reference names (its default when no version is given), and the ones missing."""
    found: list[PackageVersion] = []
    missing: list[str] = []
    for reference in references:
        application_id, wanted = reference["applicationId"], reference.get("version")
        version = _pick(known.get(application_id.lower(), []), wanted)
        if version is None:
            missing.append(f"{application_id}:{wanted or 'default'}")
        else:
            found.append(version)
    return found, missing


def invalid_references(missing: list[str]) -> Conflict:
    """409 InvalidApplicationPackageReferences naming the package versions that are not uploaded."""
    message = f"The application package references are not valid: {', '.join(missing)}"
    return Conflict(message, code="InvalidApplicationPackageReferences")


async def require_packages(ctx: Context, references: list[dict[str, Any]]) -> None:
    """Raise 409 InvalidApplicationPackageReferences unless every referenced package version is uploaded."""
    if not references:
        return
    _, missing = resolve(references, await catalogue(ctx))
    if missing:
        raise invalid_references(missing)


async def package_specs(ctx: Context, references: list[dict[str, Any]] | None) -> list[ApplicationPackageSpec]:
    """What a node needs to install the referenced packages (missing ones are left out; the node's run fails)."""
    if not references:
        return []
    found, _ = resolve(references, await catalogue(ctx))
    return [
        ApplicationPackageSpec(
            application_id=version.application_id,
            version=version.version,
            is_default=version.is_default,
            package_url=ctx.storage.package_url(version),
        )
        for version in found
    ]
