"""The pipeline's set-up, before and around its steps: which steps run (``main.execute_steps``,
in ``pipeline.yaml``'s order), where each one's MLflow project comes from, the parameters
it is given (:mod:`util_lib.pipeline.graph`), the environment every step inherits, the
pipeline's MLflow run (nested under a sweep's multirun run in a sweep), the environment
manager, and the modules the fork server loads ahead of the steps.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from util_lib.names import (
    ARTIFACT_STORE_ENV,
    GROUP_ENV,
    LAUNCHER_RUN_TAG,
    LOG_FILE_ENV,
    MULTIRUN_ENV,
    PROJECT_ENV,
    PROJECT_ROOT,
)

# Puts conf/ (the config groups) on Hydra's search path, for whoever composes config.yaml to
# call this module (main.py, the tests), as importing main.py did.
from util_lib.pipeline import config as _config_groups  # noqa: F401
from util_lib.pipeline import forkserver
from util_lib.pipeline.config_checks import parse_steps
from util_lib.pipeline.graph import get_step, step_names

ROOT = PROJECT_ROOT  # main.py's folder, and the step folders'
STEPS = step_names()  # pipeline.yaml's, in order


def selected_steps(execute_steps: Any) -> list[str]:
    """Return the steps to run, in pipeline order, from ``all``, a list or a comma string.

    Raises
    ------
    ValueError
        When a name is not one of the pipeline's steps.
    """
    if isinstance(execute_steps, ListConfig):
        execute_steps = list(execute_steps)
    names = parse_steps(execute_steps)
    if names is None:
        raise ValueError(
            f"main.execute_steps must be all, a list or a comma string: {execute_steps!r}"
        )
    unknown = [s for s in names if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {unknown} in main.execute_steps; steps: {list(STEPS)}")
    return [s for s in STEPS if s in names]


def step_uri(step: str, repository: str | None, version: str | None) -> tuple[str, str | None]:
    """Where the MLflow project of ``step`` comes from, and the git version to check out.

    Parameters
    ----------
    step : str
        One of the pipeline's steps.
    repository : str or None
        ``main.components_repository``: a git URL whose folder ``step`` holds the step (MLflow's
        ``<uri>#<subdirectory>``); None for the step folder beside main.py.
    version : str or None
        ``main.components_version``: tag, branch or commit of that repository; None for its
        default branch.

    Raises
    ------
    ValueError
        When a version comes without a repository, or with a local folder (MLflow would check
        the version out inside that folder itself).
    """
    if not repository:
        if version:
            raise ValueError(
                f"main.components_version={version!r} needs main.components_repository"
            )
        return str(ROOT / step), None
    repository = str(repository).rstrip("/")
    if "#" in repository:
        raise ValueError(
            f"main.components_repository={repository!r}: give the repository only; "
            "each step's folder is appended as #<step>"
        )
    local = repository.startswith("file:") or Path(repository).expanduser().exists()
    if local and version:
        raise ValueError(
            f"main.components_repository={repository!r} is a local folder: MLflow would check "
            f"out {version!r} inside it; serve it over git (git daemon, https) or drop "
            "main.components_version"
        )
    return f"{repository}#{step}", str(version) if version else None


def step_parameters(
    step: str, config: DictConfig, written: dict[str, str], output_dir: Path
) -> dict[str, Any]:
    """The MLproject parameters of ``step`` as pipeline.yaml declares them, from the config and
    what earlier steps wrote (a config section goes to a file in ``output_dir``)."""
    from util_lib.pipeline.graph import step_parameters as declared_parameters

    return declared_parameters(
        get_step(step), config, written, lambda key: write_config_section(config, key, output_dir)
    )


def write_config_section(config: DictConfig, key: str, output_dir: Path) -> Path:
    """Write config.yaml's section ``key``, resolved, to ``output_dir/<key>.yaml``; return it.

    (A file, not parameters: MLflow logs and prints every parameter, and a section is nested.)
    """
    path = output_dir / f"{key}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.select(config, key), path, resolve=True)
    return path


def configure_environment(config: DictConfig, base: Path) -> Path:
    """Environment every step inherits: W&B grouping, store choice, log file, imports."""
    from util_lib.step.trackers import skip_databricks_probe

    log_file = Path(os.environ.get(LOG_FILE_ENV) or base / config.main.log_file).resolve()
    os.environ[LOG_FILE_ENV] = str(log_file)
    os.environ[PROJECT_ENV] = config.main.project_name
    os.environ[GROUP_ENV] = config.main.experiment_name
    os.environ[ARTIFACT_STORE_ENV] = config.main.artifact_store
    os.environ.setdefault("WANDB_DIR", str(base))
    skip_databricks_probe()
    # util_lib and the step packages import from the project root, in any env manager.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return log_file


def open_pipeline_run(mlflow: Any, experiment_name: str) -> Any:
    """The parent run of the steps, in the project's experiment.

    `mlflow run .` makes a run in the experiment it was given (Default unless
    --experiment-name): it is the parent when that is the project's experiment; otherwise a
    "pipeline" run in the project's experiment is, linked to it by tags, so that `mlflow ui`
    shows the pipeline with its steps nested under it.
    """
    from mlflow import MlflowClient

    from util_lib.step.trackers import get_or_create_experiment

    # Created explicitly: on a local store its artifacts then sit beside the database.
    experiment = mlflow.set_experiment(experiment_id=get_or_create_experiment(experiment_name))
    job = multirun_job()
    if job is not None:
        # One job of a sweep: its own pipeline run, nested under the sweep's multirun run.
        from util_lib.pipeline.multirun import job_tags

        multirun, num, overrides = job
        tags = job_tags(multirun, num, overrides)
        # The environment manager `mlflow run` was given, recorded on the multirun run.
        env = MlflowClient().get_run(multirun).data.tags.get("mlflow.project.env")
        if env:
            tags["mlflow.project.env"] = env
        return mlflow.start_run(run_name=f"pipeline #{num}", parent_run_id=multirun, tags=tags)
    launcher = os.environ.get("MLFLOW_RUN_ID")
    if launcher:
        client = MlflowClient()
        launcher_run = client.get_run(launcher)
        if launcher_run.info.experiment_id == experiment.experiment_id:
            return mlflow.start_run(run_id=launcher)
        os.environ.pop("MLFLOW_RUN_ID")
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        tags = {LAUNCHER_RUN_TAG: launcher}
        # The environment manager `mlflow run` was given (it tags the launcher): steps inherit it.
        env = launcher_run.data.tags.get("mlflow.project.env")
        if env:
            tags["mlflow.project.env"] = env
        run = mlflow.start_run(run_name="pipeline", tags=tags)
        client.set_tag(launcher, "util_lib.pipeline_run", run.info.run_id)
        return run
    return mlflow.start_run(run_name="pipeline")


def multirun_job() -> tuple[str, int, list[str]] | None:
    """(multirun run id, job number, overrides) when this is a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = os.environ.get(MULTIRUN_ENV)
    if not multirun or not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return multirun, int(hydra_config.job.num), list(hydra_config.overrides.task)


def step_env_manager(config: DictConfig, parent: Any) -> str:
    """main.env_manager, else the manager `mlflow run` was given (it tags non-local ones)."""
    if config.main.env_manager:
        return str(config.main.env_manager)
    env = parent.data.tags.get("mlflow.project.env", "local")
    # In a container (`--backend kubernetes`, docker_env) the image is the environment.
    return "local" if env == "docker" else env


def warm_steps(config: DictConfig, serve: bool) -> None:
    """Have the fork server import what the steps this config runs import, in their order."""
    from util_lib.pipeline.tracking_server import server_enabled

    try:
        steps = selected_steps(config.main.execute_steps)
    except Exception:  # noqa: BLE001 - the config check, next, says what is wrong
        steps = list(STEPS)
    # MLflow's default store is a SQLite file too. Over REST (a server's URI, or the
    # pipeline's own server on that file) the steps never load MLflow's SQLAlchemy store.
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    # (Whether the user's own MLflow credentials keep the server off is not asked here: that
    # imports MLflow, and a wrong guess only changes what is loaded ahead.)
    local = serve and server_enabled() and uri.startswith("sqlite:///")
    over_rest = uri.startswith(("http://", "https://")) or local
    store = [] if over_rest else [forkserver.STORE_MODULE]
    for name in steps:
        step = get_step(name)
        forkserver.warm([*step.imports, *store], step=step.folder)


def drop_hydra_console_handler() -> None:
    """Remove the console handler Hydra's own logging gave the root logger before the job
    began: setup_logging's handler prints every line already (redacted, with the step's
    name), and a person would read each driver line twice. Handlers writing elsewhere (the
    log file, pytest's capture) stay."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        stream = getattr(handler, "stream", None)
        if type(handler) is logging.StreamHandler and stream in (sys.stdout, sys.stderr):
            root.removeHandler(handler)
