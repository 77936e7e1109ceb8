"""The step loop of the pipeline: each selected step through ``mlflow.run``, in order, or from
the step cache; a failed step, Ctrl-C or SIGTERM ends the pipeline with every run it opened
saying so.

main.py (the Hydra entry point) checks the configuration and calls :func:`run_pipeline`.
Each step's concrete output (``name:vN``) is handed to the next step, so a step never reads a
version another pipeline wrote meanwhile; a step left out reads ``name:current`` instead,
which the loop moves after each step onto the versions that step read and wrote
(:mod:`util_lib.pipeline.graph`). A step whose code, parameters, inputs and environment match
a finished run of it is not run again (``main.cache``, :mod:`util_lib.pipeline.cache`): that
run's outputs are handed on, so the same command after a failure resumes at the failed step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from util_lib.names import STEP_RUN_PREFIX, STEP_STATUS_PREFIX
from util_lib.pipeline import forkserver
from util_lib.pipeline.console import last_lines, log_size, say, steps_output_to
from util_lib.pipeline.endings import (
    DRIVER_TAG,
    Interrupted,
    driver_identity,
    interrupts_as_exceptions,
    mark_abandoned_runs,
    mark_interrupted,
)
from util_lib.pipeline.graph import get_step
from util_lib.pipeline.setup import (
    configure_environment,
    drop_hydra_console_handler,
    multirun_job,
    open_pipeline_run,
    selected_steps,
    step_env_manager,
    step_parameters,
    step_uri,
)
from util_lib.pipeline.summary import (
    StepResult,
    failure_cause,
    format_summary,
    heartbeat,
    print_where_to_look,
    progress,
    record_result,
)

logger = logging.getLogger("main")  # the driver's log lines, named after main.py


class StepFailedError(CompactHydraException):
    """A step of a sweep's job failed (Hydra records the job as failed and goes on or stops).

    Compact: Hydra prints its message alone, without a traceback and a HYDRA_FULL_ERROR hint
    after it, so the message (the step and its cause) stays the last line.
    """


def run_pipeline(config: DictConfig, output_dir: Path, serve: bool = False) -> float | None:
    """Run the selected steps; print the summary; return the validation AUC (if trained).

    With ``serve``, the steps reach a local SQLite store through a tracking server that the
    driver runs for the length of the pipeline (util_lib/pipeline/tracking_server.py).

    Raises
    ------
    SystemExit
        With code 1 when a step fails, after naming the step, its run and the log file.
    """
    import mlflow

    from util_lib.artifacts.backends import choose_backends
    from util_lib.redact import git_credentials
    from util_lib.step.logs import setup_logging

    base = Path.cwd()
    steps = selected_steps(config.main.execute_steps)
    repository = config.main.components_repository
    if repository:
        # MLflow records and prints the URI of each step: git alone gets the credentials.
        repository, git_env = git_credentials(str(repository))
        os.environ.update(git_env)
    uris = {s: step_uri(s, repository, config.main.components_version) for s in steps}
    log_file = configure_environment(config, base)
    # Quiet (main.verbose=false): the terminal gets the progress lines, the summary and the
    # driver's warnings and errors; the log file gets everything.
    verbose = bool(config.main.verbose)
    setup_logging("main", console_level=logging.INFO if verbose else logging.WARNING)
    drop_hydra_console_handler()
    backends = choose_backends(config.main.artifact_store)
    logger.info("artifact store: %s (%s)", backends.artifact_store, backends.reason)
    store_uri = mlflow.get_tracking_uri()  # what the summary names: it outlives the server
    logger.info("W&B: %s; MLflow tracking: %s", backends.wandb_mode, store_uri)

    results = [StepResult(step) for step in steps]
    written: dict[str, str] = {}
    with (
        # Ctrl-C and SIGTERM become an exception: the runs opened below end KILLED.
        interrupts_as_exceptions(),
        open_pipeline_run(mlflow, config.main.project_name) as parent,
        # Opened after the run: the project's experiment is made on the store itself.
        _pipeline_server(serve, store_uri) as steps_uri,
        # Where `mlflow.run` makes each step's temporary folder: removed with the pipeline.
        tempfile.TemporaryDirectory(prefix="util_lib-steps-") as storage_dir,
    ):
        mlflow.set_tag(DRIVER_TAG, driver_identity())
        mlflow.log_params({"execute_steps": ",".join(steps), "config_dir": str(output_dir)})
        env_manager = step_env_manager(config, mlflow.get_run(parent.info.run_id))
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
        from util_lib.artifacts.backends import open_store
        from util_lib.artifacts.interface import mark_current

        project = config.main.project_name
        artifacts = cache.store if cache else open_store(backends.artifact_store, project)
        from util_lib.artifacts.lineage_picture import WandbLineageRun, log_pipeline_lineage

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
                    record_result(result, hit.run)
                    result.status = "CACHED"
                    result.seconds = time.monotonic() - start
                else:
                    progress(f"{position} …")
                    at_work = (result.step, int(time.time() * 1000))
                    with heartbeat(position, start):
                        _run_step(
                            result,
                            params,
                            uris[result.step],
                            config,
                            env_manager,
                            start,
                            steps_uri(),
                            storage_dir,
                            None if verbose else log_file,
                        )
                    if result.status == "FAILED":
                        progress(f"{position} FAILED {result.seconds:.1f} s (run {result.run_id})")
                        lineage_run.finish(failed=True)
                        _fail(result, results, log_file, cache is not None, mlflow, store_uri)
                    if cache and key:
                        # As of the step's end: it may have moved what it depends on (check_data
                        # sets the reference that its key reads).
                        after = cache.key(step, params, env_manager, uris[result.step])
                        if after:
                            cache.remember(result.run_id, after)
                progress(f"{position} {result.status} {result.seconds:.1f} s (run {result.run_id})")
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
            from util_lib.step.datasets import log_pipeline_inputs

            # The printed link opens this run: its page shows the data and models of its steps.
            log_pipeline_inputs(client, parent.info.run_id, [r.run_id for r in results])
            # A failure to draw only warns.
            log_pipeline_lineage(
                parent.info.run_id, written.values(), [r.run_id for r in results], lineage_run
            )
        except Interrupted as stop:
            _end_interrupted(stop, at_work, client, parent.info.run_id, lineage_run, results)
    print_where_to_look(
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
    from util_lib.pipeline.tracking_server import start_pipeline_server

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


def _step_cache(config: DictConfig, client: Any, experiment_id: str) -> Any:
    """The step cache of this pipeline's experiment, or None with ``main.cache=false``."""
    if not config.main.cache:
        logger.info("main.cache=false: every step runs")
        return None
    from util_lib.artifacts.backends import choose_backends, open_store
    from util_lib.pipeline.cache import StepCache

    kind = choose_backends(config.main.artifact_store).artifact_store
    return StepCache(
        client, experiment_id, open_store(kind, project=config.main.project_name), config
    )


def _run_step(
    result: StepResult,
    params: dict[str, Any],
    source: tuple[str, str | None],
    config: DictConfig,
    env_manager: str,
    start: float,
    tracking_uri: str | None = None,
    storage_dir: str | None = None,
    output_to: Path | None = None,
) -> None:
    """Run one step through ``mlflow.run``; record its run (FAILED when it failed) in ``result``.

    ``tracking_uri``: the step's store (the pipeline's tracking server), when not the driver's.
    ``storage_dir``: where MLflow makes the step's temporary folder (default: the system's).
    ``output_to``: the log file that gets the step's output instead of the terminal (a quiet
    pipeline); the end of it is kept in ``result.tail`` when the step fails.
    """
    import mlflow
    from mlflow.exceptions import ExecutionException

    from util_lib.step.arguments import hide_secrets

    # A URL with a password or token reaches the step through the environment only: MLflow
    # logs every parameter and prints the command line.
    params, secrets = hide_secrets(params)
    logger.info("%s: starting with %s", result.step, params)
    uri, version = source
    os.environ.update(secrets)
    store_uri = mlflow.get_tracking_uri()
    since = log_size(output_to) if output_to else 0  # where the step's output starts
    try:
        # `mlflow.run` hands its tracking URI to the step; the driver's other calls stay on
        # the store it has open (calls to a server in its own process would cost it more).
        mlflow.set_tracking_uri(tracking_uri or store_uri)
        with steps_output_to(output_to) if output_to else contextlib.nullcontext():
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
        record_result(result, mlflow.MlflowClient().get_run(submitted.run_id))
    except ExecutionException as exc:
        match = re.search(r"ID '([0-9a-f]+)'", str(exc))
        result.status, result.run_id = "FAILED", match[1] if match else "?"
        if output_to:
            result.tail = last_lines(output_to, since)
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
    """End the pipeline after ``result``'s step failed: the end of its output (when the
    terminal did not show it), where to look and how to resume; its cause last."""
    before = results.index(result)
    resume = (
        f"fix the cause and run the same command again: it resumes at {result.step} (the "
        f"{before} step(s) before it come from the step cache)"
        if cache
        else "main.cache=false: the same command runs every step again"
    )
    if result.tail:
        say(f"\nThe last {len(result.tail)} lines of {result.step}'s output ({log_file}):")
        say("\n".join(f"  {line}" for line in result.tail) + "\n")
    progress(format_summary(results))
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
    cause = f"{result.step} failed: {failure_cause(mlflow.MlflowClient(), result.run_id)}"
    if multirun_job() is not None:
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
    if multirun_job() is not None:
        raise stop  # the whole sweep stops
    sys.exit(stop.exit_code)
