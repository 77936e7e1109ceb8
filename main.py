"""Run the pipeline: each step of ``main.execute_steps`` as an MLflow project, in order.

    mlflow run . --env-manager local
    mlflow run . --env-manager local \
        -P hydra_options="main.execute_steps='train_random_forest,evaluate'"

The steps, what they read and write and where their parameters come from are declared once,
in ``pipeline.yaml`` (util_lib/graph.py); one loop runs them. Each step's concrete output
(``name:vN``) is handed to the next step, so a step never reads a version another pipeline
wrote meanwhile; a step left out reads ``name:current`` instead, which the pipeline moves
after each step onto the versions that step read and wrote (util_lib/graph.py). A step whose
code, parameters, inputs and environment match a finished run of it is not run again
(``main.cache``, util_lib/step_cache.py): that run's outputs are handed on, so the same
command after a failure resumes at the failed step. The pipeline run returns the validation
AUC (the objective of Hydra sweepers). In a sweep (`-m`), each job is a pipeline run of its
own nested under the sweep's "multirun" run, which util_lib/sweep_report.py (a Hydra callback
of config.yaml) opens and reports on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from util_lib import forkserver

if __name__ == "__main__":
    # The steps' libraries start loading now, in a process of their own
    # (util_lib/forkserver.py), while this one imports Hydra and MLflow, checks the config and
    # opens its run; go() adds the modules of the steps the config runs. One for a whole
    # sweep run from this process (a joblib sweep's workers use it too).
    forkserver.start(wait=False)

import hydra  # noqa: E402 - after the fork server's start, on purpose
from hydra.errors import CompactHydraException  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

# Importing it registers the schema that config.yaml's defaults name (before @hydra.main runs).
from util_lib.config_schema import ConfigError, check_config  # noqa: E402
from util_lib.endings import (  # noqa: E402
    DRIVER_TAG,
    Interrupted,
    driver_identity,
    interrupts_as_exceptions,
    mark_abandoned_runs,
    mark_interrupted,
)
from util_lib.environment import (  # noqa: E402
    ARTIFACT_STORE_ENV,
    GROUP_ENV,
    LOG_FILE_ENV,
    MULTIRUN_ENV,
    PROGRESS_ENV,
    PROJECT_ENV,
)
from util_lib.graph import get_step, headline_metrics, step_names  # noqa: E402
from util_lib.tags import (  # noqa: E402
    LAUNCHER_RUN_TAG,
    STEP_RUN_PREFIX,
    STEP_STATUS_PREFIX,
    WRITTEN_TAG,
)

logger = logging.getLogger("main")

ROOT = Path(__file__).resolve().parent
STEPS = step_names()  # pipeline.yaml's, in order


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
    """Return the steps to run, in pipeline order, from ``all``, a list or a comma string.

    Raises
    ------
    ValueError
        When a name is not one of the pipeline's steps.
    """
    from util_lib.config_schema import parse_steps

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
    from util_lib.graph import step_parameters as declared_parameters

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


def _configure_environment(config: DictConfig, base: Path) -> Path:
    """Environment every step inherits: W&B grouping, store choice, log file, imports."""
    from util_lib.tracking import skip_databricks_probe

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
        tags = {LAUNCHER_RUN_TAG: launcher}
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

    multirun = os.environ.get(MULTIRUN_ENV)
    if not multirun or not HydraConfig.initialized():
        return None
    hydra_config = HydraConfig.get()
    if hydra_config.mode != RunMode.MULTIRUN:
        return None
    return multirun, int(hydra_config.job.num), list(hydra_config.overrides.task)


class StepFailedError(CompactHydraException):
    """A step of a sweep's job failed (Hydra records the job as failed and goes on or stops).

    Compact: Hydra prints its message alone, without a traceback and a HYDRA_FULL_ERROR hint
    after it, so the message (the step and its cause) stays the last line.
    """


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
    written = run.data.tags.get(WRITTEN_TAG, "")
    result.written = [s for s in written.split(",") if s]
    result.metrics = {k: v for k, v in run.data.metrics.items() if k in headline_metrics()}
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


def run_pipeline(config: DictConfig, output_dir: Path, serve: bool = False) -> float | None:
    """Run the selected steps; print the summary; return the validation AUC (if trained).

    With ``serve``, the steps reach a local SQLite store through a tracking server that the
    driver runs for the length of the pipeline (util_lib/tracking_server.py).

    Raises
    ------
    SystemExit
        With code 1 when a step fails, after naming the step, its run and the log file.
    """
    import mlflow

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
    _drop_hydra_console_handler()
    backends = choose_backends(config.main.artifact_store)
    logger.info("artifact store: %s (%s)", backends.artifact_store, backends.reason)
    store_uri = mlflow.get_tracking_uri()  # what the summary names: it outlives the server
    logger.info("W&B: %s; MLflow tracking: %s", backends.wandb_mode, store_uri)

    results = [StepResult(step) for step in steps]
    written: dict[str, str] = {}
    with (
        # Ctrl-C and SIGTERM become an exception: the runs opened below end KILLED.
        interrupts_as_exceptions(),
        _open_pipeline_run(mlflow, config.main.project_name) as parent,
        # Opened after the run: the project's experiment is made on the store itself.
        _pipeline_server(serve, store_uri) as steps_uri,
        # Where `mlflow.run` makes each step's temporary folder: removed with the pipeline.
        tempfile.TemporaryDirectory(prefix="util_lib-steps-") as storage_dir,
    ):
        mlflow.set_tag(DRIVER_TAG, driver_identity())
        mlflow.log_params({"execute_steps": ",".join(steps), "config_dir": str(output_dir)})
        env_manager = _env_manager(config, mlflow.get_run(parent.info.run_id))
        if env_manager != "local":
            # The steps run in their environment's interpreter, which the fork server (this
            # one's) cannot stand for.
            forkserver.stop()
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
        # Runs that a pipeline killed outright left RUNNING say so now.
        mark_abandoned_runs(client, parent.info.experiment_id, parent.info.run_id)
        cache = _step_cache(config, client, parent.info.experiment_id)
        from util_lib.artifact_store import mark_current, open_store

        project = config.main.project_name
        artifacts = cache.store if cache else open_store(backends.artifact_store, project)
        from util_lib.lineage import WandbLineageRun, log_pipeline_lineage

        # The W&B run of the lineage picture opens while the steps work (2 s off the end).
        lineage_run = WandbLineageRun(parent.info.run_id, config.main.project_name)
        at_work: tuple[str | None, int] = (None, parent.info.start_time)  # step, its start (ms)
        try:
            for index, result in enumerate(results, 1):
                step = get_step(result.step)
                params = step_parameters(result.step, config, written, output_dir)
                if cache:
                    params = cache.pin_inputs(step, params)
                key = cache.key(step, params, env_manager, uris[result.step]) if cache else None
                position = f"[{index}/{len(results)}] {result.step}"
                hit = cache.lookup(step, key, env_manager, uris[result.step]) if key else None
                start = time.monotonic()
                if hit is not None:
                    _record(result, hit.run)
                    result.status = "CACHED"
                    result.seconds = time.monotonic() - start
                else:
                    _progress(f"{position} …")
                    at_work = (result.step, int(time.time() * 1000))
                    with _heartbeat(position, start):
                        _run_step(
                            result,
                            params,
                            uris[result.step],
                            config,
                            env_manager,
                            start,
                            steps_uri(),
                            storage_dir,
                        )
                    if result.status == "FAILED":
                        _progress(f"{position} FAILED {result.seconds:.1f} s (run {result.run_id})")
                        lineage_run.finish(failed=True)
                        _fail(result, results, log_file, cache is not None, mlflow, store_uri)
                    if cache and key:
                        # As of the step's end: it may have moved what it depends on (check_data
                        # sets the reference that its key reads).
                        after = cache.key(step, params, env_manager, uris[result.step])
                        if after:
                            cache.remember(result.run_id, after)
                _progress(
                    f"{position} {result.status} {result.seconds:.1f} s (run {result.run_id})"
                )
                mlflow.set_tags(
                    {
                        STEP_RUN_PREFIX + result.step: result.run_id,
                        STEP_STATUS_PREFIX + result.step: result.status,
                    }
                )
                written.update({spec.split(":")[0]: spec for spec in result.written})
                # What the step read and wrote becomes "current": what a step run alone reads.
                inputs = [params[p.name] for p in step.parameters if p.source == "input"]
                mark_current(artifacts, [*inputs, *result.written])
                mlflow.log_metrics({k: v for k, v in result.metrics.items()})
                logger.info(
                    "%s: %s in %.1f s (run %s), wrote %s",
                    result.step,
                    result.status,
                    result.seconds,
                    result.run_id,
                    result.written or "nothing",
                )
            from util_lib.datasets import log_pipeline_inputs

            # The printed link opens this run: its page shows the data and models of its steps.
            log_pipeline_inputs(client, parent.info.run_id, [r.run_id for r in results])
            # A failure to draw only warns.
            log_pipeline_lineage(
                parent.info.run_id, written.values(), [r.run_id for r in results], lineage_run
            )
        except Interrupted as stop:
            _end_interrupted(stop, at_work, client, parent.info.run_id, lineage_run, results)
    _print_where_to_look(
        results,
        log_file,
        store_uri,
        backends.wandb_mode,
        (parent.info.experiment_id, parent.info.run_id),
    )
    metrics = {k: v for r in results for k, v in r.metrics.items()}
    return metrics.get("val_auc")


@contextlib.contextmanager
def _pipeline_server(serve: bool, store_uri: str) -> Iterator[Callable[[], str | None]]:
    """Yield a function that gives the steps' tracking URI: a tracking server on ``store_uri``
    (a local SQLite file) that this process runs while open, started with the first step that
    runs (a pipeline whose steps all come from the cache needs none); None (the steps use the
    store) without one."""
    from util_lib.tracking_server import start_pipeline_server

    server: Any = None
    tried = not serve

    def url() -> str | None:
        nonlocal server, tried
        if not tried:
            tried = True
            server = start_pipeline_server(store_uri)
            if server is not None:
                # MLflow prints "View run ... at <tracking URI>" as each step's run ends: links
                # to this server die with the pipeline; the summary gives the lasting one.
                os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
                logger.info(
                    "tracking server %s on %s (up in %.2f s): the steps use it",
                    server.url,
                    store_uri,
                    server.start_seconds,
                )
        return server.url if server is not None else None

    try:
        yield url
    finally:
        if server is not None:
            server.stop()


def _drop_hydra_console_handler() -> None:
    """Remove the console handler Hydra's own logging gave the root logger before the job
    began: setup_logging's handler prints every line already (redacted, with the step's
    name), and a person would read each driver line twice. Handlers writing elsewhere (the
    log file, pytest's capture) stay."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        stream = getattr(handler, "stream", None)
        if type(handler) is logging.StreamHandler and stream in (sys.stdout, sys.stderr):
            root.removeHandler(handler)


def _step_cache(config: DictConfig, client: Any, experiment_id: str) -> Any:
    """The step cache of this pipeline's experiment, or None with ``main.cache=false``."""
    if not config.main.cache:
        logger.info("main.cache=false: every step runs")
        return None
    from util_lib.artifact_store import open_store
    from util_lib.backends import choose_backends
    from util_lib.step_cache import StepCache

    kind = choose_backends(config.main.artifact_store).artifact_store
    return StepCache(
        client, experiment_id, open_store(kind, project=config.main.project_name), config
    )


def _progress(line: str) -> None:
    """A line on the terminal (not only in the log) as a step starts and ends."""
    print(line, flush=True)


@contextlib.contextmanager
def _heartbeat(position: str, start: float) -> Iterator[None]:
    """While a step works, a line every ``$UTIL_LIB_PROGRESS_SECONDS`` (30) seconds: a long
    step (train on 100 x the data) says it is still at it."""
    every = float(os.environ.get(PROGRESS_ENV) or 30)
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            _progress(f"{position} … still running ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _run_step(
    result: StepResult,
    params: dict[str, Any],
    source: tuple[str, str | None],
    config: DictConfig,
    env_manager: str,
    start: float,
    tracking_uri: str | None = None,
    storage_dir: str | None = None,
) -> None:
    """Run one step through ``mlflow.run``; record its run (FAILED when it failed) in ``result``.

    ``tracking_uri``: the step's store (the pipeline's tracking server), when not the driver's.
    ``storage_dir``: where MLflow makes the step's temporary folder (default: the system's).
    """
    import mlflow
    from mlflow.exceptions import ExecutionException

    from util_lib.arguments import hide_secrets

    # A URL with a password or token reaches the step through the environment only: MLflow
    # logs every parameter and prints the command line.
    params, secrets = hide_secrets(params)
    logger.info("%s: starting with %s", result.step, params)
    uri, version = source
    os.environ.update(secrets)
    store_uri = mlflow.get_tracking_uri()
    try:
        # `mlflow.run` hands its tracking URI to the step; the driver's other calls stay on
        # the store it has open (calls to a server in its own process would cost it more).
        mlflow.set_tracking_uri(tracking_uri or store_uri)
        submitted = mlflow.run(
            uri,
            version=version,
            entry_point="main",
            parameters=params,
            experiment_name=config.main.project_name,
            run_name=result.step,
            env_manager=env_manager,
            storage_dir=storage_dir,
            synchronous=True,
        )
        mlflow.set_tracking_uri(store_uri)
        _record(result, mlflow.MlflowClient().get_run(submitted.run_id))
    except ExecutionException as exc:
        match = re.search(r"ID '([0-9a-f]+)'", str(exc))
        result.status, result.run_id = "FAILED", match[1] if match else "?"
    finally:
        mlflow.set_tracking_uri(store_uri)
        result.seconds = time.monotonic() - start
        for name in secrets:
            os.environ.pop(name, None)


def _fail(
    result: StepResult,
    results: list[StepResult],
    log_file: Path,
    cache: bool,
    mlflow: Any,
    store_uri: str,
) -> None:
    """End the pipeline after ``result``'s step failed: say where to look and how to resume."""
    before = results.index(result)
    resume = (
        f"fix the cause and run the same command again: it resumes at {result.step} (the "
        f"{before} step(s) before it come from the step cache)"
        if cache
        else "main.cache=false: the same command runs every step again"
    )
    _progress(format_summary(results))
    logger.error(
        "step %s failed (MLflow run %s); see %s and `mlflow ui --backend-store-uri %s`; %s",
        result.step,
        result.run_id,
        log_file,
        store_uri,
        resume,
    )
    mlflow.set_tag("util_lib.failed_step", result.step)
    mlflow.end_run(status="FAILED")
    # The last line a person reads: what went wrong, as the step recorded it.
    cause = f"{result.step} failed: {_failure_cause(mlflow.MlflowClient(), result.run_id)}"
    if _multirun_job() is not None:
        # SystemExit would end the whole sweep (and kill joblib's workers).
        raise StepFailedError(cause)
    logger.error("%s", cause)
    sys.exit(1)


def _end_interrupted(
    stop: Interrupted,
    at_work: tuple[str | None, int],
    client: Any,
    run_id: str,
    lineage_run: Any,
    results: list[StepResult],
) -> None:
    """End the pipeline after Ctrl-C or SIGTERM: its runs KILLED, the sweep (if any) stopped."""
    step, since = at_work
    for result in results:
        if result.step == step:
            result.status = "KILLED"
    lineage_run.finish(failed=True)
    mark_interrupted(client, run_id, step, since, stop.signum)
    import mlflow

    mlflow.end_run(status="KILLED")  # already so in the store; this forgets it as active
    logger.error(
        "interrupted (%s) during %s: the pipeline run %s and its step's run are KILLED",
        signal.Signals(stop.signum).name,
        step or "the pipeline's start",
        run_id,
    )
    if _multirun_job() is not None:
        raise stop  # the whole sweep stops
    sys.exit(stop.exit_code)


def _failure_cause(client: Any, run_id: str) -> str:
    """Why the step's run failed, as the step recorded it (util_lib.tracking); else where its
    own words are."""
    from util_lib.tags import FAILURE_TAG

    try:
        cause = client.get_run(run_id).data.tags.get(FAILURE_TAG)
    except Exception:  # noqa: BLE001 - no run (the step did not start): say where to look
        cause = None
    return cause or "it stopped before recording why: its output above says it"


def _print_where_to_look(
    results: list[StepResult],
    log_file: Path,
    tracking_uri: str,
    wandb_mode: str,
    pipeline_run: tuple[str, str] | None = None,
) -> None:
    from util_lib.redact import redact_url
    from util_lib.ui_links import run_page

    summary = format_summary(results)
    print(f"\nPipeline summary\n{summary}\n")
    logger.info("pipeline summary:\n%s", summary)
    print(f"Log file:    {log_file}")
    if pipeline_run is None:
        print(f"MLflow UI:   mlflow ui --backend-store-uri {redact_url(tracking_uri)}")
    else:
        url, command = run_page(tracking_uri, *pipeline_run)
        if command:
            print(f"MLflow UI:   {command}")
            print(f"             then open {url}")
        else:
            print(f"MLflow UI:   {url}")
    urls = [r.wandb_url for r in results if r.wandb_url]
    if urls:
        print(f"W&B:         {urls[0].split('/runs/')[0]}")
    elif wandb_mode == "offline":
        wandb_dir = Path(os.environ.get("WANDB_DIR", ".")) / "wandb"
        print(f"W&B offline: {wandb_dir} (upload later with `wandb sync --sync-all` there)")
    from util_lib.store import configured_project

    # The artifacts' project (WANDB_PROJECT, set from main.project_name), when the command's
    # default (config.yaml's) is not it.
    project = os.environ.get(PROJECT_ENV, "")
    option = f" --project {project}" if project and project != configured_project() else ""
    print(
        f"Artifacts:   python -m util_lib.artifacts list{option}  "
        f"(MLFLOW_TRACKING_URI={redact_url(tracking_uri)})"
    )


def _warm_steps(config: DictConfig, serve: bool) -> None:
    """Have the fork server import what the steps this config runs import, in their order."""
    from util_lib.tracking_server import server_enabled

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


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def go(config: DictConfig) -> float | None:
    """Hydra entry point: check the configuration, then run the pipeline for it (one job of a
    sweep). A bad value exits (fails the job) before any run is opened."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_config = HydraConfig.get()
    # A sweep's jobs keep the store they were given: each job is a pipeline of its own.
    serve = hydra_config.mode != RunMode.MULTIRUN
    if serve and os.environ.get("MLFLOW_RUN_ID"):
        # Started by `mlflow run`: a stop of that process (a kill of it alone) stops the
        # pipeline too, which then ends its runs KILLED. (Not when run directly: nohup keeps
        # a pipeline going after its terminal closes. Not a sweep's jobs: a joblib worker's
        # parent is a thread of the sweep that may end before the job.)
        forkserver.end_with_parent(signal.SIGTERM)
    # What the steps this config runs import, loaded by the fork server ahead of them (one is
    # started here when none runs yet, e.g. main.py imported rather than run).
    forkserver.start()
    _warm_steps(config, serve)
    try:
        check_config(config)
    except ConfigError as error:
        if hydra_config.mode == RunMode.MULTIRUN:
            raise  # Hydra records the job as failed; the sweep exits non-zero
        print(f"{error}\nNo step was run.", file=sys.stderr, flush=True)
        sys.exit(1)
    return run_pipeline(config, Path(hydra_config.runtime.output_dir), serve)


if __name__ == "__main__":
    go()
    # Reached when the pipeline (or sweep) succeeded: end without the interpreter's teardown.
    from util_lib.process_exit import exit_quickly

    exit_quickly()
