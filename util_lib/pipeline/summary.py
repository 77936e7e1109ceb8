"""What the pipeline prints: a line as each step starts and ends (:func:`progress`), and at the
end the summary table (step, status, seconds, artifacts written, headline metrics) with where
to look next: the log file, the MLflow UI's page of the pipeline run, W&B, the artifacts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from util_lib.names import PROGRESS_ENV, PROJECT_ENV, WRITTEN_TAG
from util_lib.pipeline.console import say
from util_lib.pipeline.graph import get_step
from util_lib.step.logs import FILE_ONLY

logger = logging.getLogger("main")  # the driver's log lines, named after main.py


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
    # The end of a failed step's output, when it went to the log file and not the terminal.
    tail: list[str] = field(default_factory=list)


def record_result(result: StepResult, run: Any) -> None:
    """Fill ``result`` from the step's MLflow ``run``: its id, status, what it wrote, the
    headline metrics pipeline.yaml declares for this step (only its own: a value another step
    declares, logged here too, is that step's) and its W&B page."""
    result.run_id = run.info.run_id
    result.status = run.info.status
    written = run.data.tags.get(WRITTEN_TAG, "")
    result.written = [s for s in written.split(",") if s]
    declared = get_step(result.step).metrics
    result.metrics = {k: v for k, v in run.data.metrics.items() if k in declared}
    result.wandb_url = run.data.tags.get("wandb.url", "")


def format_summary(results: list[StepResult]) -> str:
    """The end-of-pipeline table: step, status, seconds, artifacts written, headline metrics."""
    from util_lib.artifacts.cli import format_table

    rows = [
        [
            r.step,
            r.status,
            f"{r.seconds:.1f}",
            ", ".join(r.written) or "-",
            ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(r.metrics.items())) or "-",
        ]
        for r in results
    ]
    return format_table(rows, ["step", "status", "seconds", "artifacts written", "metrics"])


def format_metric(value: float) -> str:
    """A metric as the summary shows it: a whole number (a count: MLflow stores every metric
    as a float) without decimals, any other value with four."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}"


def progress(line: str) -> None:
    """A line on the terminal (not only in the log) as a step starts and ends."""
    say(line)


def print_where_to_look(
    results: list[StepResult],
    log_file: Path,
    tracking_uri: str,
    wandb_mode: str,
    pipeline_run: tuple[str, str] | None = None,
) -> None:
    from util_lib.pipeline.ui_links import run_page
    from util_lib.redact import redact_url

    summary = format_summary(results)
    print(f"\nPipeline summary\n{summary}\n")
    # For the log file: the terminal has it already.
    logger.info("pipeline summary:\n%s", summary, extra=FILE_ONLY)
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
    from util_lib.artifacts.backends import configured_project

    # The artifacts' project (WANDB_PROJECT, set from main.project_name), when the command's
    # default (config.yaml's) is not it.
    project = os.environ.get(PROJECT_ENV, "")
    option = f" --project {project}" if project and project != configured_project() else ""
    print(
        f"Artifacts:   python -m util_lib.artifacts list{option}  "
        f"(MLFLOW_TRACKING_URI={redact_url(tracking_uri)})"
    )


@contextlib.contextmanager
def heartbeat(position: str, start: float) -> Iterator[None]:
    """While a step works, a line every ``$UTIL_LIB_PROGRESS_SECONDS`` (30) seconds: a long
    step (train on 100 x the data) says it is still at it."""
    every = float(os.environ.get(PROGRESS_ENV) or 30)
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            progress(f"{position} … still running ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def failure_cause(client: Any, run_id: str) -> str:
    """Why the step's run failed, as the step recorded it (util_lib.step.run); else where its
    own words are."""
    from util_lib.names import FAILURE_TAG

    try:
        cause = client.get_run(run_id).data.tags.get(FAILURE_TAG)
    except Exception:  # noqa: BLE001 - no run (the step did not start): say where to look
        cause = None
    return cause or "it stopped before recording why: its output above says it"
