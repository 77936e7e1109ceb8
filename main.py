"""Run the pipeline: each step of ``main.execute_steps`` as an MLflow project, in order.

    mlflow run . --env-manager local
    mlflow run . --env-manager local \
        -P hydra_options="main.execute_steps='train_random_forest,evaluate'"

Each step's concrete output (``name:vN``) is handed to the next step, so a step never reads a
version another pipeline wrote meanwhile; a step left out reads ``name:latest`` instead.
The pipeline run returns the validation AUC (the objective of Hydra sweepers). In a sweep
(`-m`), each job is a pipeline run of its own nested under the sweep's "multirun" run, which
util_lib/sweep_report.py (a Hydra callback of config.yaml) opens and reports on.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

# Importing it registers the schema that config.yaml's defaults name (before @hydra.main runs).
from util_lib.config_schema import ConfigError, check_config

logger = logging.getLogger("main")

ROOT = Path(__file__).resolve().parent
STEPS = ("get_data", "preprocess", "check_data", "segregate", "train_random_forest", "evaluate")
# Artifact names of the pipeline (the seed's); the model's name is configurable.
RAW = "raw_data.parquet"
PREPROCESSED = "preprocessed_data"
TRAIN = "data_train"
TEST = "data_test"
HEADLINE_METRICS = ("val_auc", "test_auc")


@dataclass
class StepResult:
    """What one step did, for the summary."""

    step: str
    status: str = "not run"
    seconds: float = 0.0
    run_id: str = ""
    written: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    wandb_url: str = ""


def selected_steps(execute_steps: Any) -> list[str]:
    """Return the steps to run, in pipeline order, from a list or a comma-separated string.

    Raises
    ------
    ValueError
        When a name is not one of the pipeline's steps.
    """
    if isinstance(execute_steps, str):
        names = [s.strip() for s in execute_steps.split(",") if s.strip()]
    elif isinstance(execute_steps, list | tuple | ListConfig):
        names = [str(s).strip() for s in execute_steps]
    else:
        raise ValueError(f"main.execute_steps must be a list or a comma string: {execute_steps!r}")
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
    step: str, config: DictConfig, written: dict[str, str], model_config: Path
) -> dict[str, Any]:
    """The MLproject parameters of ``step``, from the config and what earlier steps wrote."""
    from util_lib.arguments import null_or, project_path

    data = config.data
    export = config.random_forest_pipeline.export_artifact

    def latest(name: str) -> str:
        return written.get(name, f"{name}:latest")

    if step == "get_data":
        return {
            # A relative path is under the project root, wherever the pipeline runs from.
            "file_url": project_path(data.file_url),
            "sha256": null_or(data.sha256),
            "artifact_name": RAW,
            "artifact_type": "raw_data",
            "artifact_description": "Raw dataset as downloaded",
        }
    if step == "preprocess":
        return {
            "input_artifact": latest(RAW),
            "artifact_name": PREPROCESSED,
            "artifact_type": "preprocessed_data",
            "artifact_description": "Deduplicated data with the text feature",
        }
    if step == "check_data":
        return {
            "reference_artifact": data.reference_dataset,
            "sample_artifact": latest(PREPROCESSED),
            "ks_alpha": data.ks_alpha,
        }
    if step == "segregate":
        return {
            "input_artifact": latest(PREPROCESSED),
            "artifact_root": "data",
            "artifact_type": "segregated_data",
            "test_size": data.test_size,
            "random_seed": config.main.random_seed,
            "stratify": null_or(data.stratify),
            "allow_unchecked": str(bool(data.allow_unchecked)).lower(),
        }
    if step == "train_random_forest":
        return {
            "train_data": latest(TRAIN),
            "model_config": str(model_config),
            "export_artifact": null_or(export),
            "registered_model_name": null_or(config.main.registered_model_name),
            "random_seed": config.main.random_seed,
            "val_size": data.val_size,
            "stratify": null_or(data.stratify),
        }
    if step == "evaluate":
        return {"model_export": latest(str(export)), "test_data": latest(TEST)}
    raise ValueError(f"unknown step {step!r}; steps: {list(STEPS)}")


def save_model_config(config: DictConfig, output_dir: Path) -> Path:
    """Write the resolved ``random_forest_pipeline`` section for the train step; return the file.

    (A file, not parameters: MLflow logs and prints every parameter, and the section is nested.)
    """
    path = output_dir / "random_forest_pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config.random_forest_pipeline, path, resolve=True)
    return path


def _configure_environment(config: DictConfig, base: Path) -> Path:
    """Environment every step inherits: W&B grouping, store choice, log file, imports."""
    from util_lib.tracking import skip_databricks_probe

    log_file = Path(os.environ.get("ML_PIPELINE_LOG") or base / config.main.log_file).resolve()
    os.environ["ML_PIPELINE_LOG"] = str(log_file)
    os.environ["WANDB_PROJECT"] = config.main.project_name
    os.environ["WANDB_RUN_GROUP"] = config.main.experiment_name
    os.environ["UTIL_LIB_ARTIFACT_STORE"] = config.main.artifact_store
    os.environ.setdefault("WANDB_DIR", str(base))
    skip_databricks_probe()
    # util_lib and the step packages import from the project root, in any env manager.
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return log_file


def _open_pipeline_run(mlflow: Any, experiment_name: str) -> Any:
    """The parent run of the steps, in the project's experiment.

    `mlflow run .` makes a run in the experiment it was given (Default unless
    --experiment-name): it is the parent when that is the project's experiment; otherwise a
    "pipeline" run in the project's experiment is, linked to it by tags, so that `mlflow ui`
    shows the pipeline with its steps nested under it.
    """
    from mlflow import MlflowClient

    from util_lib.tracking import get_or_create_experiment

    # Created explicitly: on a local store its artifacts then sit beside the database.
    experiment = mlflow.set_experiment(experiment_id=get_or_create_experiment(experiment_name))
    job = _multirun_job()
    if job is not None:
        # One job of a sweep: its own pipeline run, nested under the sweep's multirun run.
        from util_lib.multirun import job_tags

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
        tags = {"util_lib.launcher_run": launcher}
        # The environment manager `mlflow run` was given (it tags the launcher): steps inherit it.
        env = launcher_run.data.tags.get("mlflow.project.env")
        if env:
            tags["mlflow.project.env"] = env
        run = mlflow.start_run(run_name="pipeline", tags=tags)
        client.set_tag(launcher, "util_lib.pipeline_run", run.info.run_id)
        return run
    return mlflow.start_run(run_name="pipeline")


def _multirun_job() -> tuple[str, int, list[str]] | None:
    """(multirun run id, job number, overrides) when this is a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from util_lib.multirun import MULTIRUN_ENV

    multirun = os.environ.get(MULTIRUN_ENV)
    if not multirun or not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return multirun, int(hydra_config.job.num), list(hydra_config.overrides.task)


class StepFailedError(RuntimeError):
    """A step of a sweep's job failed (Hydra records the job as failed and goes on or stops)."""


def _env_manager(config: DictConfig, parent: Any) -> str:
    """main.env_manager, else the manager `mlflow run` was given (it tags non-local ones)."""
    if config.main.env_manager:
        return str(config.main.env_manager)
    env = parent.data.tags.get("mlflow.project.env", "local")
    # In a container (`--backend kubernetes`, docker_env) the image is the environment.
    return "local" if env == "docker" else env


def _record(result: StepResult, run: Any) -> None:
    result.run_id = run.info.run_id
    result.status = run.info.status
    written = run.data.tags.get("util_lib.artifacts_written", "")
    result.written = [s for s in written.split(",") if s]
    result.metrics = {k: v for k, v in run.data.metrics.items() if k in HEADLINE_METRICS}
    result.wandb_url = run.data.tags.get("wandb.url", "")


def format_summary(results: list[StepResult]) -> str:
    """The end-of-pipeline table: step, status, seconds, artifacts written, headline metrics."""
    from util_lib.artifacts import format_table

    rows = [
        [
            r.step,
            r.status,
            f"{r.seconds:.1f}",
            ", ".join(r.written) or "-",
            ", ".join(f"{k}={v:.4f}" for k, v in sorted(r.metrics.items())) or "-",
        ]
        for r in results
    ]
    return format_table(rows, ["step", "status", "seconds", "artifacts written", "metrics"])


def run_pipeline(config: DictConfig, output_dir: Path) -> float | None:
    """Run the selected steps; print the summary; return the validation AUC (if trained).

    Raises
    ------
    SystemExit
        With code 1 when a step fails, after naming the step, its run and the log file.
    """
    import mlflow
    from mlflow.exceptions import ExecutionException

    from util_lib.arguments import hide_secrets
    from util_lib.backends import choose_backends
    from util_lib.logs import setup_logging
    from util_lib.redact import git_credentials

    base = Path.cwd()
    steps = selected_steps(config.main.execute_steps)
    repository = config.main.components_repository
    if repository:
        # MLflow records and prints the URI of each step: git alone gets the credentials.
        repository, git_env = git_credentials(str(repository))
        os.environ.update(git_env)
    uris = {s: step_uri(s, repository, config.main.components_version) for s in steps}
    log_file = _configure_environment(config, base)
    setup_logging("main")
    backends = choose_backends(config.main.artifact_store)
    logger.info("artifact store: %s (%s)", backends.artifact_store, backends.reason)
    logger.info("W&B: %s; MLflow tracking: %s", backends.wandb_mode, mlflow.get_tracking_uri())

    model_config = save_model_config(config, output_dir)

    results = [StepResult(step) for step in steps]
    written: dict[str, str] = {}
    with _open_pipeline_run(mlflow, config.main.project_name) as parent:
        mlflow.log_params({"execute_steps": ",".join(steps), "config_dir": str(output_dir)})
        env_manager = _env_manager(config, mlflow.get_run(parent.info.run_id))
        logger.info(
            "pipeline run %s; steps %s; env manager %s", parent.info.run_id, steps, env_manager
        )
        if repository:
            logger.info(
                "steps from %s at %s",
                repository,
                config.main.components_version or "its default branch",
            )
        client = mlflow.MlflowClient()
        for result in results:
            # A URL with a password or token reaches the step through the environment only:
            # MLflow logs every parameter and prints the command line.
            params, secrets = hide_secrets(
                step_parameters(result.step, config, written, model_config)
            )
            logger.info("%s: starting with %s", result.step, params)
            start = time.monotonic()
            uri, version = uris[result.step]
            os.environ.update(secrets)
            try:
                submitted = mlflow.run(
                    uri,
                    version=version,
                    entry_point="main",
                    parameters=params,
                    experiment_name=config.main.project_name,
                    run_name=result.step,
                    env_manager=env_manager,
                    synchronous=True,
                )
                result.seconds = time.monotonic() - start
                _record(result, client.get_run(submitted.run_id))
            except ExecutionException as exc:
                result.seconds = time.monotonic() - start
                match = re.search(r"ID '([0-9a-f]+)'", str(exc))
                result.status, result.run_id = "FAILED", match[1] if match else "?"
                print(format_summary(results))
                logger.error(
                    "step %s failed (MLflow run %s); see %s and `mlflow ui --backend-store-uri %s`",
                    result.step,
                    result.run_id,
                    log_file,
                    mlflow.get_tracking_uri(),
                )
                mlflow.set_tag("util_lib.failed_step", result.step)
                mlflow.end_run(status="FAILED")
                if _multirun_job() is not None:
                    # SystemExit would end the whole sweep (and kill joblib's workers).
                    raise StepFailedError(
                        f"step {result.step} failed (MLflow run {result.run_id}); see {log_file}"
                    ) from exc
                sys.exit(1)
            finally:
                for name in secrets:
                    os.environ.pop(name, None)
            written.update({spec.split(":")[0]: spec for spec in result.written})
            mlflow.log_metrics({k: v for k, v in result.metrics.items()})
            logger.info(
                "%s: %s in %.1f s, wrote %s",
                result.step,
                result.status,
                result.seconds,
                result.written or "nothing",
            )
    _print_where_to_look(results, log_file, mlflow.get_tracking_uri(), backends.wandb_mode)
    metrics = {k: v for r in results for k, v in r.metrics.items()}
    return metrics.get("val_auc")


def _print_where_to_look(
    results: list[StepResult], log_file: Path, tracking_uri: str, wandb_mode: str
) -> None:
    from util_lib.redact import redact_url

    summary = format_summary(results)
    print(f"\nPipeline summary\n{summary}\n")
    logger.info("pipeline summary:\n%s", summary)
    print(f"Log file:    {log_file}")
    print(f"MLflow UI:   mlflow ui --backend-store-uri {redact_url(tracking_uri)}")
    urls = [r.wandb_url for r in results if r.wandb_url]
    if urls:
        print(f"W&B:         {urls[0].split('/runs/')[0]}")
    elif wandb_mode == "offline":
        wandb_dir = Path(os.environ.get("WANDB_DIR", ".")) / "wandb"
        print(f"W&B offline: {wandb_dir} (upload later with `wandb sync --sync-all` there)")
    from util_lib.store import configured_project

    # The artifacts' project (WANDB_PROJECT, set from main.project_name), when the command's
    # default (config.yaml's) is not it.
    project = os.environ.get("WANDB_PROJECT", "")
    option = f" --project {project}" if project and project != configured_project() else ""
    print(
        f"Artifacts:   python -m util_lib.artifacts list{option}  "
        f"(MLFLOW_TRACKING_URI={redact_url(tracking_uri)})"
    )


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def go(config: DictConfig) -> float | None:
    """Hydra entry point: check the configuration, then run the pipeline for it (one job of a
    sweep). A bad value exits (fails the job) before any run is opened."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_config = HydraConfig.get()
    try:
        check_config(config)
    except ConfigError as error:
        if hydra_config.mode == RunMode.MULTIRUN:
            raise  # Hydra records the job as failed; the sweep exits non-zero
        print(f"{error}\nNo step was run.", file=sys.stderr, flush=True)
        sys.exit(1)
    return run_pipeline(config, Path(hydra_config.runtime.output_dir))


if __name__ == "__main__":
    go()
