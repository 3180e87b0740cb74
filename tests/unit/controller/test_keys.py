from __future__ import annotations

from controller.store.keys import Keys


def test_the_job_key_of_a_task_also_of_a_scheduled_job() -> None:
    keys = Keys("by")
    assert keys.job_key_of_task(keys.task("nightly:job-3", "t1")) == "nightly:job-3"
    assert keys.job_key_of_task(keys.task("plain", "t1")) == "plain"
