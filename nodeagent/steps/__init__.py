"""The named steps an attempt runs through, one per module."""

from __future__ import annotations

from nodeagent.steps.download_resources import DownloadResourceFiles
from nodeagent.steps.install_packages import InstallPackages
from nodeagent.steps.job_preparation import RunJobPreparation
from nodeagent.steps.prepare_dirs import PrepareDirs
from nodeagent.steps.report import ReportResult
from nodeagent.steps.run_command import RunCommandLine
from nodeagent.steps.upload_outputs import UploadOutputFiles

__all__ = [
    "DownloadResourceFiles",
    "InstallPackages",
    "PrepareDirs",
    "ReportResult",
    "RunCommandLine",
    "RunJobPreparation",
    "UploadOutputFiles",
]
