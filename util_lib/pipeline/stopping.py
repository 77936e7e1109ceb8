"""How the step loop ends a pipeline early: after a failed step
(:func:`end_failed_pipeline`), or after Ctrl-C or SIGTERM (:func:`end_interrupted_pipeline`);
in a sweep's job by an exception that Hydra records (:class:`StepFailedError`), not an exit.

Each one names what happened last, so that it is the line a person reads: the failed step's
cause, or the signal and the step it stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException

from util_lib.pipeline.console import say
from util_lib.pipeline.endings import Interrupted, mark_interrupted
from util_lib.pipeline.setup import multirun_job
from util_lib.pipeline.summary import StepResult, failure_cause, format_summary, progress

logger = logging.getLogger("main")  # the driver's log lines, named after main.py


class StepFailedError(CompactHydraException):
    """A step of a sweep's job failed (Hydra records the job as failed and goes on or stops).

    Compact: Hydra prints its message alone, without a traceback and a HYDRA_FULL_ERROR hint
    after it, so the message (the step and its cause) stays the last line.
    """


def end_failed_pipeline(
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


def end_interrupted_pipeline(
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
