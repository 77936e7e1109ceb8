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

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from util_lib.names import STEP_RUN_PREFIX, STEP_STATUS_PREFIX
from util_lib.pipeline import forkserver
from util_lib.pipeline.endings import (
    DRIVER_TAG,
    Interrupted,
    driver_identity,
    interrupts_as_exceptions,
    mark_abandoned_runs,
)
from util_lib.pipeline.graph import get_step
from util_lib.pipeline.launch import pipeline_server, run_step
from util_lib.pipeline.setup import (
    configure_environment,
    drop_hydra_console_handler,
    open_pipeline_run,
    selected_steps,
    step_env_manager,
    step_parameters,
    step_uri,
)

# StepFailedError stays importable from here, where it was defined before the split.
from util_lib.pipeline.stopping import (
    StepFailedError,
    end_failed_pipeline,
    end_interrupted_pipeline,
)
from util_lib.pipeline.summary import (
    StepResult,
    heartbeat,
    print_where_to_look,
    progress,
    record_result,
)

__all__ = ["StepFailedError", "run_pipeline"]

logger = logging.getLogger("main")  # the driver's log lines, named after main.py


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
        pipeline_server(serve, store_uri) as steps_uri,
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
                        run_step(
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
                        end_failed_pipeline(
                            result, results, log_file, cache is not None, mlflow, store_uri
                        )
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
            end_interrupted_pipeline(
                stop, at_work, client, parent.info.run_id, lineage_run, results
            )
    print_where_to_look(
        results,
        log_file,
        store_uri,
        backends.wandb_mode,
        (parent.info.experiment_id, parent.info.run_id),
    )
    metrics = {k: v for r in results for k, v in r.metrics.items()}
    return metrics.get("val_auc")


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
