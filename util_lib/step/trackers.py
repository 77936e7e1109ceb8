"""The trackers' side of a step run that :class:`util_lib.step.run.Run` leaves to plain
functions: MLflow's experiment (made so that two processes may create it at once, its artifacts
beside a local store), W&B's run (:func:`start_wandb`), parameters flattened, MLflow's
Databricks probe skipped, a logged model deleted with its files, the process's peak memory.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.names import GROUP_ENV

if TYPE_CHECKING:
    pass


# W&B's console capture: "wrap" patches sys.stdout/sys.stderr's write (W&B's "auto" means the
# same today). "redirect" (file descriptors) costs about 2.4 s more a run here, and pytest,
# which runs the data check, swaps those descriptors under it.
WANDB_CONSOLE = "wrap"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dictionaries into ``{"a.b": value}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def get_or_create_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Return the id of MLflow experiment ``name``, creating it when it does not exist.

    A new experiment on a local SQLite store keeps its artifacts beside the database, in
    ``<store folder>/mlruns/<name>``: MLflow's default, ``./mlruns`` of the creating process,
    is wherever that process runs (the project folder, or a remote run's temporary clone).
    On a tracking server the server's artifact root applies.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    uri = client.tracking_uri
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :].split("?")[0]).resolve()
        location = str(database.parent / "mlruns" / name)
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def experiment_from_env() -> str | None:
    """The experiment id that ``MLFLOW_EXPERIMENT_NAME`` names, created if need be; else None.

    MLflow's own creation of that experiment at ``start_run`` fails in one of two processes
    that start together on a store without it (a unique-name error); this one tolerates that,
    and keeps the artifacts beside a local database like every experiment the project makes.
    ``MLFLOW_EXPERIMENT_ID`` wins over the name, as in MLflow.
    """
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return None
    return get_or_create_experiment(name)


def skip_databricks_probe() -> None:
    """Spare MLflow's probe for a Databricks notebook at each run start (unless set already).

    ``mlflow.start_run`` imports IPython to look for Databricks' ``dbutils``, for run
    resumption on Databricks serverless GPU jobs: 0.25 s per process here, paid by every step.
    Someone on Databricks who wants that resumption sets the variable to ``true``.
    """
    os.environ.setdefault("MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS", "false")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def delete_logged_model(client: Any, model_id: str) -> None:
    """Delete a logged model and its files: MLflow's delete only marks it deleted, and a
    failed export would leave its folder (12 MB for the forest) behind."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = client.get_logged_model(model_id).artifact_location
    client.delete_logged_model(model_id)
    get_artifact_repository(location).delete_artifacts()
    local = Path(location.removeprefix("file://"))
    if local.is_absolute() and local.name == "artifacts":
        # The model's own folder (models/<id>/) holds nothing else once its files are gone.
        with suppress(OSError):
            local.parent.rmdir()


def start_wandb(
    step: str,
    job_type: str,
    project: str,
    mode: str,
    config: dict[str, Any],
    mlflow_run_id: str,
) -> Any:
    """Start the W&B run of a step run in ``mode`` (None when W&B is ``disabled``), and tag
    the MLflow run ``mlflow_run_id`` (the active one) with where W&B keeps it."""
    if mode == "disabled":
        return None
    import mlflow
    import wandb

    run = wandb.init(
        project=project,
        group=os.environ.get(GROUP_ENV) or None,
        job_type=job_type,
        name=step,
        config=flatten(config),
        mode=mode,
        # The step's console output (its log lines go to stderr) lands in the run's
        # files/output.log, as in the seed; silent keeps W&B's own banner off it.
        settings=wandb.Settings(silent=True, console=WANDB_CONSOLE),
    )
    # wandb.init puts its own sys.excepthook, which prints a traceback unredacted, in
    # front of ours: put the redacting one back.
    from util_lib.step.logs import install_redacting_excepthooks

    install_redacting_excepthooks()
    run.config.update({"mlflow_run_id": mlflow_run_id}, allow_val_change=True)
    tags = {"wandb.mode": mode, "wandb.run_id": run.id}
    if mode == "online":
        tags["wandb.url"] = run.url or ""
    else:
        tags["wandb.dir"] = str(Path(run.dir).parent)
    mlflow.set_tags(tags)
    return run
