"""The MLflow side of a Hydra multirun: one "multirun" run that groups the jobs' pipeline runs.

Hydra's driver process opens the multirun run before any job starts (which also creates and
migrates a fresh SQLite store once, before parallel jobs could race to do it) and hands each
job a :class:`JobContext`: the run to nest under, the tracking URI (made absolute) and the
environment and folder of the driver. A job applies it first thing (:func:`enter_job`), so jobs
in the driver's process (basic launcher), in worker processes (joblib) or on other hosts (Ray)
all log to the same store and end up under the same multirun run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from util_lib.names import (
    JOB_NUM_TAG,
    LAUNCHER_RUN_TAG,
    MULTIRUN_ENV,
    MULTIRUN_RUN_TAG,
    MULTIRUN_TAG,
    OVERRIDES_TAG,
    RUN_KIND_TAG,
    SWEEP_DIR_TAG,
)

# `mlflow run` records a non-local environment manager here; the jobs' steps use it too.
ENV_MANAGER_TAG = "mlflow.project.env"

# Forwarded to jobs that do not inherit the driver's environment (Ray workers): tracking,
# W&B, artifact store and log settings. Credentials stay behind (log in on the workers).
_FORWARDED = re.compile(r"^(MLFLOW_|WANDB_|UTIL_LIB_|ML_PIPELINE_)")
_SECRET = re.compile(r"KEY|TOKEN|PASSWORD|SECRET")
# Set by `mlflow run` for its own run: a job must open its own runs, not resume that one.
_LAUNCHER_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


@dataclass(frozen=True)
class JobContext:
    """What every job of a multirun needs from the driver.

    Attributes
    ----------
    run_id : str
        The multirun run the jobs' pipeline runs nest under.
    experiment_id : str
        Its experiment (the project's).
    tracking_uri : str
        The driver's MLflow tracking URI, absolute.
    cwd : str
        The driver's working folder (relative paths in the config are relative to it).
    sweep_dir : str
        Hydra's sweep folder, absolute.
    environment : dict
        Variables set in the driver that jobs elsewhere must see.
    """

    run_id: str
    experiment_id: str
    tracking_uri: str
    cwd: str
    sweep_dir: str
    environment: dict[str, str] = field(default_factory=dict)


def absolute_tracking_uri(uri: str, base: Path) -> str:
    """Make a relative SQLite or file-store URI absolute (jobs may run in other folders).

    Examples
    --------
    >>> absolute_tracking_uri("sqlite:///mlflow.db", Path("/work"))
    'sqlite:////work/mlflow.db'
    >>> absolute_tracking_uri("http://127.0.0.1:5000", Path("/work"))
    'http://127.0.0.1:5000'
    """
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        if path and not path.startswith("/") and path != ":memory:":
            return f"sqlite:///{(base / path).resolve()}"
        return uri
    if uri.startswith("file:") or (":" not in uri and uri != "databricks"):
        path = uri.removeprefix("file://").removeprefix("file:")
        return Path(base / path).resolve().as_uri()
    return uri


def forwarded_environment(environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """The driver's variables that jobs must share (tracking, W&B, store, log), no secrets."""
    return {
        k: v
        for k, v in environ.items()
        if _FORWARDED.match(k) and not _SECRET.search(k) and k not in _LAUNCHER_ENV
    }


def open_multirun(
    project: str, sweep_dir: str, overrides: list[str], settings: dict[str, Any]
) -> JobContext:
    """Open the multirun run in the project's experiment and return the jobs' context.

    Under `mlflow run`, the launcher's run (``$MLFLOW_RUN_ID``) becomes the multirun run when it
    is in the project's experiment; otherwise a new run named "multirun" is, linked to it by
    tags. The run stays open until :func:`close_multirun`.

    Parameters
    ----------
    project : str
        MLflow experiment of the pipeline (``main.project_name``).
    sweep_dir : str
        Hydra's sweep folder (``hydra.sweep.dir``).
    overrides : list of str
        The command line's overrides, sweeps included.
    settings : dict
        Sweeper, launcher and the like, logged as parameters.
    """
    import mlflow
    from mlflow import MlflowClient

    from util_lib.step.trackers import get_or_create_experiment

    cwd = Path.cwd()
    uri = absolute_tracking_uri(mlflow.get_tracking_uri(), cwd)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(uri)
    experiment_id = get_or_create_experiment(project, uri)
    tags = {
        RUN_KIND_TAG: "multirun",
        SWEEP_DIR_TAG: str(Path(sweep_dir).resolve()),
        OVERRIDES_TAG: " ".join(overrides)[:5000],
    }
    launcher = os.environ.get("MLFLOW_RUN_ID")
    if launcher and client.get_run(launcher).info.experiment_id == experiment_id:
        run_id = launcher
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    else:
        if launcher:
            tags[LAUNCHER_RUN_TAG] = launcher
            env_manager = client.get_run(launcher).data.tags.get(ENV_MANAGER_TAG)
            if env_manager:
                tags[ENV_MANAGER_TAG] = env_manager
        run_id = client.create_run(experiment_id, run_name="multirun", tags=tags).info.run_id
        if launcher:
            client.set_tag(launcher, MULTIRUN_RUN_TAG, run_id)
    params = {"sweep_overrides": " ".join(overrides), **settings}
    for key, value in params.items():
        client.log_param(run_id, key, str(value)[:6000])
    for name in _LAUNCHER_ENV:
        os.environ.pop(name, None)
    os.environ[MULTIRUN_ENV] = run_id
    return JobContext(
        run_id,
        experiment_id,
        uri,
        str(cwd),
        str(Path(sweep_dir).resolve()),
        forwarded_environment(os.environ),
    )


def enter_job(context: JobContext) -> None:
    """Give this process (a job) the driver's tracking store, environment and folder."""
    os.environ.update(context.environment)
    os.environ["MLFLOW_TRACKING_URI"] = context.tracking_uri
    os.environ[MULTIRUN_ENV] = context.run_id
    for name in _LAUNCHER_ENV:
        os.environ.pop(name, None)
    if Path(context.cwd).is_dir() and Path.cwd() != Path(context.cwd):
        os.chdir(context.cwd)


def close_multirun(context: JobContext, status: str = "FINISHED") -> None:
    """End the multirun run with ``status`` (FINISHED or FAILED)."""
    from mlflow import MlflowClient

    MlflowClient(context.tracking_uri).set_terminated(context.run_id, status=status)


def job_tags(multirun_run_id: str, job_num: int, overrides: list[str]) -> dict[str, str]:
    """Tags of a job's pipeline run: its multirun, number and overrides (a JSON list)."""
    return {
        MULTIRUN_TAG: multirun_run_id,
        RUN_KIND_TAG: "pipeline",
        JOB_NUM_TAG: str(job_num),
        OVERRIDES_TAG: json.dumps(overrides)[:5000],
    }
