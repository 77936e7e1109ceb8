"""The report of a Hydra multirun, and the Hydra callback that groups and reports the sweep.

config.yaml registers :class:`SweepReport` under ``hydra.callbacks``. In a multirun it

- opens one "multirun" MLflow run before any job starts and hands every job the context it
  needs to nest its pipeline run under it (:mod:`util_lib.pipeline.multirun`), whatever the
  launcher;
- after the last job, collects every job's pipeline run and steps and prints a table (job
  number, overrides, validation and test AUC, fit seconds, exported model version), writes it
  as ``sweep_report.csv`` (and ``.txt``) with a plot of AUC against the swept parameters
  (``sweep_report.png``) into the sweep folder, logs the three as artifacts of the multirun
  run, and names the best job with the command that promotes its model to ``prod``.

A single run (no ``-m``) is left alone. The rows of the report are
:mod:`util_lib.pipeline.sweep_jobs`, its files :mod:`util_lib.pipeline.sweep_files`.
"""

from __future__ import annotations

import atexit
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from util_lib.pipeline.multirun import JobContext, close_multirun, enter_job, open_multirun

# The report's rows and files live in sweep_jobs.py and sweep_files.py; their names stay
# importable from here, the module config.yaml's callback and the tests have always named.
from util_lib.pipeline.sweep_files import (
    COLUMNS,
    REPORT_NAME,
    Report,
    format_report,
    plot_auc,
    write_csv,
    write_report,
)
from util_lib.pipeline.sweep_jobs import (
    JobRow,
    best_job,
    collect_jobs,
    promote_command,
    swept_keys,
    swept_parameters,
)
from util_lib.pipeline.ui_links import multirun_link

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = [
    "COLUMNS",
    "REPORT_NAME",
    "JobRow",
    "Report",
    "SweepReport",
    "best_job",
    "collect_jobs",
    "format_report",
    "plot_auc",
    "promote_command",
    "swept_keys",
    "swept_parameters",
    "write_csv",
    "write_report",
]

logger = logging.getLogger(__name__)


class SweepReport(Callback):
    """Hydra callback: group a multirun's jobs under one MLflow run and report on them."""

    def __init__(self) -> None:
        self.context: JobContext | None = None
        self.swept: list[str] | None = None  # the swept keys, as Hydra parsed the sweep
        self._closed = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Check every job's configuration, then open the multirun run (and the store) before
        any job starts."""
        from util_lib.pipeline.config import check_sweep
        from util_lib.pipeline.config_checks import ConfigError

        try:
            check_sweep(config)
        except ConfigError as error:
            # Hydra turns a callback's exception into a warning: exit, before any run exists.
            print(error, file=sys.stderr, flush=True)
            sys.exit(1)
        self.swept = swept_keys(config)
        choices = config.hydra.runtime.choices
        sweep_dir = str(config.hydra.sweep.dir)
        self.context = open_multirun(
            config.main.project_name,
            sweep_dir,
            list(config.hydra.overrides.task),
            {
                "sweeper": choices.get("hydra/sweeper"),
                "launcher": choices.get("hydra/launcher"),
                "sweep_dir": str(Path(sweep_dir).resolve()),
            },
        )
        atexit.register(self._finish, "FAILED")
        if choices.get("hydra/launcher") == "ray" and not Path(sweep_dir).is_absolute():
            # Ray workers resolve a relative sweep folder against their own working folder.
            logger.warning(
                "hydra.sweep.dir %s is relative: Ray jobs write their outputs relative to the "
                "worker's folder; give an absolute hydra.sweep.dir",
                sweep_dir,
            )
        print(
            f"Multirun: MLflow run {self.context.run_id} in experiment "
            f"{config.main.project_name!r}; job outputs under {Path(sweep_dir).resolve()}",
            flush=True,
        )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """In the job's process, wherever it runs: take the driver's store, env and folder."""
        if self.context is not None:
            enter_job(self.context)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Collect, print, write and log the report; end the multirun run."""
        self._finish("FINISHED")

    def _finish(self, status: str) -> None:
        # Also called at exit with FAILED: a failed job makes Hydra stop the sweep (after the
        # batch it was in) without calling on_multirun_end. The report shows what ran.
        if self.context is None or self._closed:
            return
        self._closed = True
        context = self.context
        try:
            report = self._report(context, self.swept)
            print(f"\n{report.text}\n\n{multirun_link(context)}\n", flush=True)
        except Exception:
            logger.exception("could not write the sweep report of %s", context.sweep_dir)
        try:
            close_multirun(context, status)
        except Exception:  # at exit the store may be gone already: nothing more to do
            logger.exception("could not end the multirun run %s", context.run_id)

    @staticmethod
    def _report(context: JobContext, swept: list[str] | None) -> Report:
        from mlflow import MlflowClient

        client = MlflowClient(context.tracking_uri)
        sweep_dir = Path(context.sweep_dir)
        rows = collect_jobs(client, context.experiment_id, context.run_id)
        report = write_report(rows, sweep_dir, context.tracking_uri, Path(context.cwd), swept)
        logger.info("sweep report of %d jobs written to %s", len(rows), sweep_dir)
        extra = [p for p in (sweep_dir / "optimization_results.yaml",) if p.exists()]
        for path in [*report.files, *extra]:
            client.log_artifact(context.run_id, str(path), artifact_path=REPORT_NAME)
        client.log_metric(context.run_id, "n_jobs", len(rows))
        if report.best is not None:
            client.log_metric(context.run_id, "best_val_auc", report.best.val_auc)
            client.set_tag(context.run_id, "util_lib.best_job", str(report.best.job))
            client.set_tag(context.run_id, "util_lib.best_model", report.best.model_export)
        return report
