from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.errors import AttemptAbandoned, PackageError
from nodeagent.messages import ApplicationPackageSpec
from nodeagent.steps import InstallPackages
from nodeagent.steps.base import RunDeps, Step, TaskContext
from nodeagent.testing import FakeBlobStore, FakeReporter, make_attempt_spec, make_context

from ..test_apppackages import make_zip

_: Step = InstallPackages()


def context(tmp_path: Path, blob: FakeBlobStore, *packages: ApplicationPackageSpec) -> TaskContext:
    deps = RunDeps(blob=blob, reporter=FakeReporter(), agent_path="/bin")
    ctx = make_context(tmp_path, make_attempt_spec(application_packages=list(packages)), deps)
    ctx.layout.create()
    return ctx


def test_installs_every_package_of_the_attempt(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/a.zip": make_zip({"a": b"A"}), "http://s/b.zip": make_zip({"b": b"B"})})
    ctx = context(
        tmp_path,
        blob,
        ApplicationPackageSpec(application_id="a", version="1", package_url="http://s/a.zip"),
        ApplicationPackageSpec(application_id="b", version="2", package_url="http://s/b.zip"),
    )
    InstallPackages().run(ctx)
    assert (ctx.layout.applications / "a_1" / "a").read_bytes() == b"A"
    assert (ctx.layout.applications / "b_2" / "b").read_bytes() == b"B"


def test_a_package_that_cannot_be_fetched_is_a_preprocessing_error(tmp_path: Path) -> None:
    ctx = context(tmp_path, FakeBlobStore(), ApplicationPackageSpec(application_id="a", version="1", package_url="u"))
    with pytest.raises(PackageError) as caught:
        InstallPackages().run(ctx)
    assert (caught.value.code, caught.value.category, caught.value.outcome) == (
        "BlobNotFound",
        "usererror",
        "preprocessing_error",
    )


def test_a_cancelled_attempt_installs_nothing(tmp_path: Path) -> None:
    blob = FakeBlobStore(sources={"http://s/a.zip": make_zip({"a": b"A"})})
    ctx = context(tmp_path, blob, ApplicationPackageSpec(application_id="a", version="1", package_url="http://s/a.zip"))
    ctx.cancel.set()
    with pytest.raises(AttemptAbandoned):
        InstallPackages().run(ctx)
    assert not (ctx.layout.applications / "a_1").exists()
