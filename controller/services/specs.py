"""What a node needs, built from stored records: an attempt's spec and its pool's config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.context import Context
from controller.domain.clock import parse_duration
from controller.render import Record
from controller.services.applications import package_specs
from controller.store import reads
from nodeagent.messages import (
    AttemptSpec,
    BindMountSpec,
    ContainerSpec,
    JobPreparationSpec,
    MultiInstanceSpec,
    OutputFileSpec,
    PoolConfig,
    ResourceFileSpec,
    StartTaskSpec,
    UserAccountSpec,
    UserIdentitySpec,
)

DEFAULT_PREPARATION_ID = "jobpreparation"
DEFAULT_RELEASE_ID = "jobrelease"
DEFAULT_RELEASE_WALL_CLOCK = "PT15M"
"""A release task's maxWallClockTime when it gives none (also the most it may give)."""


def environment(*sources: list[dict[str, Any]] | None) -> dict[str, str]:
    """Environment settings merged in order; a later source wins for the same name."""
    merged: dict[str, str] = {}
    for settings in sources:
        for setting in settings or []:
            merged[setting["name"]] = setting.get("value") or ""
    return merged


def output_file(item: dict[str, Any]) -> OutputFileSpec:
    """An outputFiles entry for the node."""
    container = item["destination"]["container"]
    return OutputFileSpec(
        file_pattern=item["filePattern"],
        container_url=container["containerUrl"],
        path=container.get("path"),
        upload_headers=container.get("uploadHeaders", []),
        upload_condition=item["uploadOptions"]["uploadCondition"],
    )


def resource_file(ctx: Context, item: dict[str, Any]) -> ResourceFileSpec:
    """A resourceFiles entry for the node; an auto-storage container becomes a read SAS URL."""
    container_url = item.get("storageContainerUrl")
    if item.get("autoStorageContainerName"):
        container_url = ctx.storage.container_read_url(item["autoStorageContainerName"])
    return ResourceFileSpec(
        http_url=item.get("httpUrl") or item.get("blobSource"),
        storage_container_url=container_url,
        blob_prefix=item.get("blobPrefix"),
        file_path=item.get("filePath"),
        file_mode=item.get("fileMode"),
    )


def identity(spec: dict[str, Any]) -> UserIdentitySpec:
    """The userIdentity for the node (Azure's default: the pool's non-admin auto user)."""
    given = spec.get("userIdentity") or {}
    auto = given.get("autoUser") or {}
    return UserIdentitySpec(
        username=given.get("username"),
        auto_user_scope=auto.get("scope") or "pool",
        elevation_level=auto.get("elevationLevel") or "nonadmin",
    )


def user_accounts(pool_spec: dict[str, Any]) -> list[UserAccountSpec]:
    """The pool's named user accounts."""
    accounts = []
    for account in pool_spec.get("userAccounts") or []:
        linux = account.get("linuxUserConfiguration") or {}
        accounts.append(
            UserAccountSpec(
                name=account["name"],
                password=account.get("password", ""),
                elevation_level=(account.get("elevationLevel") or "nonadmin").lower(),
                uid=linux.get("uid"),
                gid=linux.get("gid"),
                ssh_private_key=linux.get("sshPrivateKey"),
            )
        )
    return accounts


def account_for(identity_spec: UserIdentitySpec, pool_spec: dict[str, Any]) -> UserAccountSpec | None:
    """The pool account a named identity refers to, if the pool defines it."""
    if not identity_spec.username:
        return None
    wanted = identity_spec.username.lower()
    return next((account for account in user_accounts(pool_spec) if account.name.lower() == wanted), None)


def container(settings: dict[str, Any] | None) -> ContainerSpec | None:
    """containerSettings for the node."""
    if not settings:
        return None
    registry = settings.get("registry") or {}
    mounts = settings.get("containerHostBatchBindMounts")
    return ContainerSpec(
        image_name=settings["imageName"],
        run_options=settings.get("containerRunOptions") or "",
        registry_server=registry.get("registryServer"),
        registry_username=registry.get("username"),
        registry_password=registry.get("password"),
        working_directory=settings.get("workingDirectory") or "taskWorkingDirectory",
        bind_mounts=None
        if mounts is None
        else [BindMountSpec(source=m["source"], read_only=bool(m.get("isReadOnly"))) for m in mounts],
    )


def seconds(duration: str | None) -> float | None:
    """An ISO-8601 duration in seconds; None when absent."""
    delta = parse_duration(duration) if duration else None
    return delta.total_seconds() if delta is not None else None


def package_references(pool_spec: dict[str, Any], task_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The pool's package references and the task's; the task's win for the same application."""
    task_refs = task_spec.get("applicationPackageReferences") or []
    named = {ref["applicationId"].lower() for ref in task_refs}
    pool_refs = [
        ref for ref in pool_spec.get("applicationPackageReferences") or [] if ref["applicationId"].lower() not in named
    ]
    return [*pool_refs, *task_refs]


def preparation_id(job_spec: dict[str, Any]) -> str | None:
    """The id of the job's preparation task, when it has one."""
    preparation = job_spec.get("jobPreparationTask")
    return None if preparation is None else preparation.get("id") or DEFAULT_PREPARATION_ID


@dataclass(frozen=True)
class Execution:
    """Which execution of which task-like spec an AttemptSpec is built for."""

    attempt_id: str
    node_id: str
    task_id: str
    task_spec: dict[str, Any]
    slots: int = 1
    retries: int = 0


async def attempt_spec(
    ctx: Context, attempt_id: str, node_id: str, job: Record, task: Record, pool: Record | None
) -> AttemptSpec:
    """Everything the agent needs to run the attempt, from the stored job, task and pool."""
    job_spec, pool_spec = json.loads(job["spec"]), json.loads(pool["spec"]) if pool else {}
    run = Execution(
        attempt_id,
        node_id,
        task["id"],
        json.loads(task["spec"]),
        int(task.get("slots", "1")),
        int(task.get("retries", "0")),
    )
    spec = await _build(ctx, run, job, job_spec, pool_spec)
    return spec.model_copy(update={"job_preparation": await preparation(ctx, node_id, job, job_spec, pool_spec)})


async def multi_instance(ctx: Context, task: Record, attempt: Record) -> MultiInstanceSpec:
    """What one instance of a multi-instance task needs: its index, every instance's address, the coordination."""
    settings = json.loads(task["spec"])["multiInstanceSettings"]
    members = (task.get("gang") or task.get("subtasks") or "").split(",")
    node_ids = [row[0] or "" for row in await reads.fields(ctx.wire, members, "node_id")]
    hosts = [row[0] or "" for row in await reads.fields(ctx.wire, [ctx.keys.node(n) for n in node_ids], "ip")]
    return MultiInstanceSpec(
        subtask_id=int(attempt.get("subtask", "0")),
        number_of_instances=len(members),
        coordination_command_line=settings["coordinationCommandLine"],
        common_resource_files=[resource_file(ctx, item) for item in settings.get("commonResourceFiles") or []],
        hosts=hosts,
        master_port=ctx.settings.master_port,
    )


def job_instance(job: Record) -> str:
    """The job's key and creation time: a job deleted and added again with its id is another instance."""
    stamp = "".join(character for character in job["created"] if character.isdigit())
    return f"{job['key']}-{stamp}"


async def preparation(
    ctx: Context, node_id: str, job: Record, job_spec: dict[str, Any], pool_spec: dict[str, Any]
) -> JobPreparationSpec | None:
    """The job's preparation task as the node runs it, if the job has one."""
    given = job_spec.get("jobPreparationTask")
    if given is None:
        return None
    prep_id = preparation_id(job_spec) or DEFAULT_PREPARATION_ID
    run = Execution(f"jobprep-{job_instance(job)}", node_id, prep_id, given)
    constraints = given.get("constraints") or {}
    return JobPreparationSpec(
        task=await _build(ctx, run, job, job_spec, pool_spec),
        wait_for_success=given.get("waitForSuccess", True),
        rerun_on_node_reboot_after_success=given.get("rerunOnNodeRebootAfterSuccess", True),
        max_task_retry_count=int(constraints.get("maxTaskRetryCount") or 0),
    )


async def release(ctx: Context, node_id: str, job: Record, pool: Record | None) -> AttemptSpec | None:
    """The job's release task as the node runs it, if the job has one."""
    job_spec, pool_spec = json.loads(job["spec"]), json.loads(pool["spec"]) if pool else {}
    given = job_spec.get("jobReleaseTask")
    if given is None:
        return None
    release_id = given.get("id") or DEFAULT_RELEASE_ID
    limit = given.get("maxWallClockTime") or DEFAULT_RELEASE_WALL_CLOCK
    task_spec = {**given, "constraints": {"maxWallClockTime": limit, "retentionTime": given.get("retentionTime")}}
    return await _build(
        ctx, Execution(f"jobrelease-{job_instance(job)}", node_id, release_id, task_spec), job, job_spec, pool_spec
    )


async def _build(
    ctx: Context, run: Execution, job: Record, job_spec: dict[str, Any], pool_spec: dict[str, Any]
) -> AttemptSpec:
    """The AttemptSpec of one execution of a task, a preparation or a release task."""
    task_spec = run.task_spec
    constraints = task_spec.get("constraints") or {}
    user = identity(task_spec)
    return AttemptSpec(
        attempt_id=run.attempt_id,
        job_id=job["id"],
        task_id=run.task_id,
        pool_id=job["pool_id"],
        node_id=run.node_id,
        account_name=ctx.settings.account_name,
        account_url=ctx.endpoint + "/",
        command_line=task_spec["commandLine"],
        environment=environment(job_spec.get("commonEnvironmentSettings"), task_spec.get("environmentSettings")),
        resource_files=[resource_file(ctx, item) for item in task_spec.get("resourceFiles", [])],
        output_files=[output_file(item) for item in task_spec.get("outputFiles", [])],
        user_identity=user,
        user_account=account_for(user, pool_spec),
        max_wall_clock_seconds=seconds(constraints.get("maxWallClockTime")),
        retention_seconds=seconds(constraints.get("retentionTime")),
        required_slots=run.slots,
        retry_count=run.retries,
        application_packages=await package_specs(ctx, package_references(pool_spec, task_spec)),
        container=container(task_spec.get("containerSettings")),
        job_preparation_task_id=preparation_id(job_spec),
    )


def start_task(ctx: Context, pool_spec: dict[str, Any]) -> StartTaskSpec | None:
    """The pool's start task for its nodes."""
    spec = pool_spec.get("startTask")
    if not spec:
        return None
    user = identity(spec)
    return StartTaskSpec(
        command_line=spec["commandLine"],
        environment=environment(spec.get("environmentSettings")),
        resource_files=[resource_file(ctx, item) for item in spec.get("resourceFiles", [])],
        user_identity=user,
        user_account=account_for(user, pool_spec),
        max_task_retry_count=int(spec.get("maxTaskRetryCount") or 0),
        wait_for_success=spec.get("waitForSuccess", True) is not False,
        container=container(spec.get("containerSettings")),
    )


def config_version(pool: Record) -> str:
    """The version of what nodes apply from the pool; it changes when the pool's properties are updated."""
    return pool.get("config_version") or pool["etag"]


async def pool_config(ctx: Context, pool: Record) -> PoolConfig:
    """What every node of the pool applies."""
    pool_spec = json.loads(pool["spec"])
    return PoolConfig(
        pool_id=pool["id"],
        version=config_version(pool),
        account_name=ctx.settings.account_name,
        account_url=ctx.endpoint + "/",
        user_accounts=user_accounts(pool_spec),
        start_task=start_task(ctx, pool_spec),
        application_packages=await package_specs(ctx, pool_spec.get("applicationPackageReferences")),
    )
