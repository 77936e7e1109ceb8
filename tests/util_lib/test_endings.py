"""Every ending leaves a clean store: interrupted pipelines end KILLED, and runs that a killed
driver left RUNNING are marked by the next pipeline (util_lib/pipeline/endings.py), on a real
store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from util_lib.names import LAUNCHER_RUN_TAG
from util_lib.pipeline.endings import (
    DRIVER_TAG,
    ENDED_BY_TAG,
    Interrupted,
    driver_alive,
    driver_identity,
    interrupts_as_exceptions,
    mark_abandoned_runs,
    mark_interrupted,
)


def _gone_process_identity() -> str:
    """The identity of a driver that has ended (a real process, waited for)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = driver_identity(process.pid)
    process.kill()
    process.wait()
    return identity


def _pipeline_with_a_step(client, experiment_id: str, identity: str) -> tuple[str, str]:
    pipeline = client.create_run(experiment_id, tags={DRIVER_TAG: identity})
    step = client.create_run(experiment_id, tags={"mlflow.parentRunId": pipeline.info.run_id})
    return pipeline.info.run_id, step.info.run_id


@pytest.mark.integration
def test_a_driver_is_alive_until_it_ends() -> None:
    assert driver_alive(driver_identity()) is True
    assert driver_alive(_gone_process_identity()) is False
    assert driver_alive(f"not-{socket.gethostname()}:1:") is None  # another host: cannot tell


def test_runs_left_running_by_a_killed_driver_are_marked_killed(tracking: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment("pipelines")
    dead = _pipeline_with_a_step(client, experiment, _gone_process_identity())
    alive = _pipeline_with_a_step(client, experiment, driver_identity())
    elsewhere = _pipeline_with_a_step(client, experiment, "another-host:4242:99")
    own = client.create_run(experiment, tags={DRIVER_TAG: driver_identity()}).info.run_id

    assert mark_abandoned_runs(client, experiment, own) == [dead[0]]

    for run_id in dead:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert "ended without closing it" in run.data.tags[ENDED_BY_TAG]
    for run_id in (*alive, *elsewhere, own):
        assert client.get_run(run_id).info.status == "RUNNING"


def test_an_interrupted_pipeline_and_its_step_at_work_end_killed(tracking: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.create_experiment("pipelines")
    pipeline, earlier = _pipeline_with_a_step(client, experiment, driver_identity())
    # `mlflow run .`'s own run, in the Default experiment, linked to the pipeline run.
    launcher = client.create_run("0").info.run_id
    client.set_tag(pipeline, LAUNCHER_RUN_TAG, launcher)
    client.set_terminated(earlier, "FINISHED")
    since = client.get_run(earlier).info.end_time + 1
    at_work = client.create_run(
        experiment, tags={"mlflow.parentRunId": pipeline}, start_time=since
    ).info.run_id
    client.set_terminated(at_work, "FAILED")  # as mlflow.run's cancel leaves it

    mark_interrupted(client, pipeline, "check_data", since, signal.SIGINT)

    assert client.get_run(earlier).info.status == "FINISHED"
    for run_id in (pipeline, at_work, launcher):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[ENDED_BY_TAG] == "interrupted by SIGINT during check_data"


def test_the_first_signal_raises_and_later_ones_wait_for_the_cleanup() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised, interrupts_as_exceptions():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs as os.kill returns
        finally:
            # The cleanup's own time: a second signal must not cut it short.
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
    assert raised.value.signum == signal.SIGTERM
    assert raised.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before
