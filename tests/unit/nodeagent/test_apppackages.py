from __future__ import annotations

import io
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from nodeagent import apppackages
from nodeagent.blob import AzureBlobStore
from nodeagent.errors import PackageError
from nodeagent.layout import NodeLayout, package_variable, package_variables
from nodeagent.messages import ApplicationPackageSpec

from .conftest import LocalServer


def make_zip(entries: dict[str, bytes], modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, 0o644) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def package(url: str, app: str = "blender", version: str = "2.7", is_default: bool = False) -> ApplicationPackageSpec:
    return ApplicationPackageSpec(application_id=app, version=version, package_url=url, is_default=is_default)


def store() -> AzureBlobStore:
    return AzureBlobStore(attempts=1, sleep=lambda seconds: None)


@pytest.fixture
def layout(tmp_path: Path) -> NodeLayout:
    node = NodeLayout(tmp_path)
    node.create()
    return node


def test_a_package_is_unpacked_under_applications(layout: NodeLayout, local_server: LocalServer) -> None:
    # Given a zip with a script and a nested file
    body = make_zip({"bin/run.sh": b"#!/bin/sh\n", "data/a.txt": b"A"}, {"bin/run.sh": 0o4775})
    url = local_server.add("/pkg.zip", (200, body))
    # When it is installed
    target = apppackages.install(package(url + "?sig=secret"), layout, store())
    # Then it is in applications/<app>_<version>, readable by all, writable by the agent only
    assert target == layout.applications / "blender_2.7"
    assert (target / "data" / "a.txt").read_bytes() == b"A"
    assert stat.S_IMODE((target / "bin" / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "data" / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((target / "bin").stat().st_mode) == 0o755
    assert apppackages.is_installed(target)
    assert [path.name for path in layout.applications.iterdir()] == ["blender_2.7"]


def test_an_installed_package_is_not_fetched_again(layout: NodeLayout, local_server: LocalServer) -> None:
    url = local_server.add("/pkg.zip", (200, make_zip({"a.txt": b"A"})))
    apppackages.install(package(url), layout, store())
    apppackages.install(package(url), layout, store())
    assert local_server.routes["/pkg.zip"].hits == 1


def test_concurrent_installs_unpack_once(layout: NodeLayout, local_server: LocalServer) -> None:
    # Given four tasks wanting the same package at once
    url = local_server.add("/pkg.zip", (200, make_zip({f"f{i}.txt": b"x" * 100_000 for i in range(20)})))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(apppackages.install(package(url), layout, store())))
        for _ in range(4)
    ]
    # When they install it
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Then one download served them all
    assert len(set(results)) == 1 and len(results) == 4
    assert local_server.routes["/pkg.zip"].hits == 1


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt", "C:\\evil.txt"])
def test_an_entry_leaving_the_package_directory_fails_the_install(
    layout: NodeLayout, local_server: LocalServer, name: str
) -> None:
    url = local_server.add("/bad.zip", (200, make_zip({"ok.txt": b"1", name: b"x"})))
    with pytest.raises(PackageError) as caught:
        apppackages.install(package(url), layout, store())
    assert caught.value.code == "ApplicationPackageInstallFailed"
    assert caught.value.outcome == "preprocessing_error"
    assert list(layout.applications.iterdir()) == []
    assert not (layout.root / "evil.txt").exists()


def test_a_missing_package_keeps_the_blob_code_and_hides_the_signature(
    layout: NodeLayout, local_server: LocalServer
) -> None:
    url = local_server.add("/gone.zip", (404, b""))
    with pytest.raises(PackageError) as caught:
        apppackages.install(package(url + "?sv=1&sig=SECRETSIG"), layout, store())
    assert caught.value.code == "BlobNotFound"
    assert "SECRETSIG" not in caught.value.message
    assert {d.name: d.value for d in caught.value.failure_info().details} == {
        "ApplicationId": "blender",
        "Version": "2.7",
    }


def test_a_file_that_is_not_a_zip_fails_the_install(layout: NodeLayout, local_server: LocalServer) -> None:
    url = local_server.add("/notzip.zip", (200, b"plain text"))
    with pytest.raises(PackageError) as caught:
        apppackages.install(package(url), layout, store())
    assert caught.value.code == "ApplicationPackageInstallFailed"
    assert list(layout.applications.iterdir()) == []


def test_leftovers_of_an_interrupted_install_are_cleared(layout: NodeLayout, local_server: LocalServer) -> None:
    # Given a half-unpacked work directory and a target without its marker
    (layout.applications / ".blender_2.7.abc.work").mkdir()
    (layout.applications / "blender_2.7").mkdir()
    url = local_server.add("/pkg.zip", (200, make_zip({"a.txt": b"A"})))
    # When the package is installed
    target = apppackages.install(package(url), layout, store())
    # Then only the complete package remains
    assert [path.name for path in layout.applications.iterdir()] == ["blender_2.7"]
    assert (target / "a.txt").exists()


def test_an_id_that_cannot_name_a_directory_fails(layout: NodeLayout) -> None:
    with pytest.raises(PackageError):
        apppackages.install(package("http://x/p.zip", app="a/b"), layout, store())


@pytest.mark.parametrize(
    ("app", "version", "expected"),
    [
        ("blender", "2.7", "AZ_BATCH_APP_PACKAGE_blender_2_7"),
        ("My-App", "1.0-beta", "AZ_BATCH_APP_PACKAGE_my_app_1_0_beta"),
        ("tool#x", None, "AZ_BATCH_APP_PACKAGE_tool_x"),
    ],
)
def test_variable_names_follow_the_linux_rule(app: str, version: str | None, expected: str) -> None:
    assert package_variable(app, version) == expected


def test_the_default_version_also_names_the_application(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path)
    variables = package_variables(
        layout, [package("u", "Blender", "2.7", is_default=True), package("u", "ffmpeg", "6.0")]
    )
    assert variables == {
        "AZ_BATCH_APP_PACKAGE_blender_2_7": str(tmp_path / "applications" / "Blender_2.7"),
        "AZ_BATCH_APP_PACKAGE_blender": str(tmp_path / "applications" / "Blender_2.7"),
        "AZ_BATCH_APP_PACKAGE_ffmpeg_6_0": str(tmp_path / "applications" / "ffmpeg_6.0"),
    }
