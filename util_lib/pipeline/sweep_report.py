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

A single run (no ``-m``) is left alone.
"""

from __future__ import annotations

import atexit
import csv
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from util_lib.names import (
    JOB_NUM_TAG,
    MULTIRUN_TAG,
    OVERRIDES_TAG,
    PROJECT_TAG,
    STEP_RUN_PREFIX,
    STEP_TAG,
    STORE_TAG,
    WRITTEN_TAG,
)
from util_lib.pipeline.multirun import JobContext, close_multirun, enter_job, open_multirun
from util_lib.pipeline.ui_links import multirun_link

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from omegaconf import DictConfig

logger = logging.getLogger(__name__)

REPORT_NAME = "sweep_report"
COLUMNS = (
    "job",
    "overrides",
    "status",
    "val_auc",
    "test_auc",
    "fit_seconds",
    "model_export",
    "pipeline_run_id",
)
# Overrides that select what runs rather than what is tuned: never "swept parameters" of a
# sweep read from its jobs' overrides (a report without Hydra's swept keys).
_NOT_PARAMETERS = ("hydra/", "hydra.", "main.")


@dataclass
class JobRow:
    """One job of a sweep, as the report shows it."""

    job: int
    overrides: list[str]
    status: str
    val_auc: float | None = None
    test_auc: float | None = None
    fit_seconds: float | None = None
    model_export: str = ""
    pipeline_run_id: str = ""
    artifact_store: str = "mlflow"
    project: str = ""  # the artifacts' project (main.project_name of the sweep)

    def parameters(self) -> dict[str, str]:
        """The job's overrides as ``{key: value}``."""
        return dict(o.lstrip("+~").split("=", 1) for o in self.overrides if "=" in o)


# ---------------------------------------------------------------------------------- collecting
def collect_jobs(client: MlflowClient, experiment_id: str, multirun_run_id: str) -> list[JobRow]:
    """Read every job of the multirun from MLflow: its pipeline run and its steps' runs.

    Returns
    -------
    list of JobRow
        Sorted by job number.
    """
    pipelines = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{MULTIRUN_TAG}` = '{multirun_run_id}'",
        max_results=10000,
    )
    from util_lib.pipeline.graph import writer_of_config_output

    # The step that exports the model (its output's name is config.yaml's export_artifact).
    trainer = writer_of_config_output("random_forest_pipeline.export_artifact")
    rows = []
    for pipeline in pipelines:
        tags = pipeline.data.tags
        steps = _step_runs(client, experiment_id, pipeline)
        by_step = {s.data.tags.get(STEP_TAG): s for s in steps}
        train = by_step.get(trainer.name) if trainer else None
        metrics = dict(pipeline.data.metrics)
        for step in steps:
            for key, value in step.data.metrics.items():
                metrics.setdefault(key, value)
        written = [w for w in train.data.tags.get(WRITTEN_TAG, "").split(",") if w] if train else []
        # The train step's export, which its parameter export_artifact names.
        export = train.data.params.get("export_artifact", "") if train else ""
        models = [w for w in written if w.startswith(f"{export}:")] or written
        rows.append(
            JobRow(
                job=int(tags.get(JOB_NUM_TAG, -1)),
                overrides=json.loads(tags.get(OVERRIDES_TAG, "[]")),
                status=pipeline.info.status,
                val_auc=metrics.get("val_auc"),
                test_auc=metrics.get("test_auc"),
                fit_seconds=metrics.get("fit_seconds"),
                model_export=next(iter(models), ""),
                pipeline_run_id=pipeline.info.run_id,
                artifact_store=train.data.tags.get(STORE_TAG, "mlflow") if train else "mlflow",
                project=train.data.tags.get(PROJECT_TAG, "") if train else "",
            )
        )
    return sorted(rows, key=lambda r: r.job)


def _step_runs(client: MlflowClient, experiment_id: str, pipeline: Any) -> list[Any]:
    """The runs of a pipeline's steps: the ones it names (a cached step's run belongs to an
    earlier pipeline), else (pipelines from before the step cache) its child runs."""
    named = [v for k, v in pipeline.data.tags.items() if k.startswith(STEP_RUN_PREFIX)]
    if named:
        return [client.get_run(run_id) for run_id in named if run_id and run_id != "?"]
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{pipeline.info.run_id}'",
        max_results=100,
    )


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps, as Hydra parses its sweep: ``hydra.sweeper.params`` then the
    command line (which wins for a key in both), each override that is a sweep
    (``model=random_forest,logistic_regression``, ``model.max_depth=range(5,15,5)``,
    ``choice(...)``, ``interval(...)``), named as Hydra names it (``model``, ``model.max_depth``,
    ``group@package``); Hydra's own settings (``hydra/launcher=...``) are not parameters.

    Parameters
    ----------
    config : omegaconf.DictConfig
        The multirun's configuration (a Hydra callback's ``on_multirun_start`` gets it).

    Returns
    -------
    list of str
        In the order Hydra reads them.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.select(config, "hydra.overrides.task") or [])
    swept: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        key = override.key_or_group + (f"@{override.package}" if override.package else "")
        if not key.startswith(("hydra/", "hydra.")):
            swept[key] = override.is_sweep_override()
    return [key for key, is_swept in swept.items() if is_swept]


def swept_parameters(rows: list[JobRow], swept: list[str] | None = None) -> list[str]:
    """The swept parameters: ``swept`` (Hydra's, :func:`swept_keys`) when given, else the
    overridden parameters whose values differ between jobs (all of them if one job)."""
    if swept is not None:
        return list(swept)
    keys: dict[str, set[str]] = {}
    for row in rows:
        for key, value in row.parameters().items():
            if not key.startswith(_NOT_PARAMETERS):
                keys.setdefault(key, set()).add(value)
    varying = [k for k, values in keys.items() if len(values) > 1]
    return varying or list(keys)


def best_job(rows: list[JobRow]) -> JobRow | None:
    """The finished job with the highest validation AUC (the sweep's objective), if any."""
    scored = [r for r in rows if r.status == "FINISHED" and r.val_auc is not None]
    return max(scored, key=lambda r: r.val_auc, default=None)


def promote_command(row: JobRow, tracking_uri: str, cwd: Path) -> str:
    """The one command that points the alias ``prod`` at the model ``row`` exported.

    It names the store the job used (``--store``), and the model with its project
    (``project/model_export:vN``) unless that is the one the command finds by default
    (config.yaml's ``main.project_name``); see :func:`util_lib.artifacts.registry.promote_command`.
    """
    from util_lib.artifacts.backends import configured_project
    from util_lib.artifacts.registry import promote_command as command

    model = row.model_export
    if row.project and row.project != configured_project():
        model = f"{row.project}/{model}"
    default_uri = f"sqlite:///{cwd.resolve() / 'mlflow.db'}"
    return command(model, "prod", row.artifact_store, tracking_uri, default_uri)


# ---------------------------------------------------------------------------------- writing
def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _swept_values(row: JobRow, swept: list[str]) -> str:
    values = row.parameters()
    return " ".join(f"{k}={values.get(k, '')}" for k in swept)


def format_report(rows: list[JobRow], swept: list[str] | None = None) -> str:
    """The report as a plain-text table, best job marked with ``*``.

    The overrides column shows the swept parameters only (``swept``, Hydra's; else see
    :func:`swept_parameters`), named as Hydra names them; the CSV has every override.
    """
    swept = swept_parameters(rows, swept)
    from util_lib.artifacts.cli import format_table

    best = best_job(rows)
    table = [
        [
            f"{r.job}{'*' if r is best else ''}",
            _swept_values(r, swept) or "-",
            r.status,
            _number(r.val_auc, 4),
            _number(r.test_auc, 4),
            _number(r.fit_seconds, 1),
            r.model_export or "-",
        ]
        for r in rows
    ]
    header = ["job", "overrides", "status", "val_auc", "test_auc", "fit_s", "model_export"]
    return format_table(table, header)


def write_csv(rows: list[JobRow], path: Path, swept: list[str] | None = None) -> Path:
    """Write the report as CSV: one row per job, the columns of :data:`COLUMNS`, then one
    column per swept parameter (see :func:`format_report`)."""
    swept = swept_parameters(rows, swept)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*COLUMNS, *swept], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            values = {k: v for k, v in asdict(row).items() if v is not None}
            values["overrides"] = " ".join(row.overrides)
            values.update({k: v for k, v in row.parameters().items() if k in swept})
            writer.writerow(values)
    return path


def _as_numbers(values: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def plot_auc(rows: list[JobRow], parameters: list[str]) -> Figure:
    """One panel per swept parameter: validation (and test) AUC of each job against its value."""
    from matplotlib.figure import Figure

    parameters = parameters or ["job"]
    figure = Figure(figsize=(5 * len(parameters), 4), layout="constrained")
    axes = figure.subplots(1, len(parameters), squeeze=False)[0]
    done = [r for r in rows if r.val_auc is not None]
    for ax, key in zip(axes, parameters, strict=True):
        labels = [str(r.job) if key == "job" else r.parameters().get(key, "") for r in done]
        x: list[float] | list[int] | None = _as_numbers(labels)
        ticks = sorted(set(labels), key=lambda v: (x is None, float(v) if x else v))
        if x is None:
            x = [ticks.index(label) for label in labels]
            ax.set_xticks(range(len(ticks)), ticks, rotation=30, ha="right")
        for metric, marker in (("val_auc", "o"), ("test_auc", "s")):
            points = [(xi, getattr(r, metric)) for xi, r in zip(x, done, strict=True)]
            points = [p for p in points if p[1] is not None]
            if points:
                ax.scatter(*zip(*points, strict=True), marker=marker, label=metric, alpha=0.8)
        ax.set_xlabel(key)
        ax.set_ylabel("AUC")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(f"Sweep: AUC of {len(done)} jobs")
    return figure


@dataclass
class Report:
    """What :func:`write_report` produced."""

    rows: list[JobRow]
    text: str
    files: list[Path]
    best: JobRow | None


def write_report(
    rows: list[JobRow],
    folder: Path,
    tracking_uri: str,
    cwd: Path | None = None,
    swept: list[str] | None = None,
) -> Report:
    """Write ``sweep_report.{txt,csv,png}`` into ``folder``; return the text and the files.

    ``swept``: the keys the sweep varies, as Hydra parsed them (:func:`swept_keys`); None: read
    from the jobs' overrides (:func:`swept_parameters`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    best = best_job(rows)
    swept = swept_parameters(rows, swept)
    lines = [f"Sweep report ({len(rows)} jobs)", format_report(rows, swept), ""]
    if best is not None:
        model = f", model {best.model_export}" if best.model_export else ""
        lines.append(
            f"Best job: #{best.job} ({_swept_values(best, swept) or 'no overrides'}), "
            f"val_auc={best.val_auc:.4f}{model}"
        )
        if best.model_export:
            lines.append(f"Promote it:  {promote_command(best, tracking_uri, cwd or Path.cwd())}")
    else:
        lines.append("No job finished with a validation AUC: no best job.")
    text = "\n".join(lines)
    (folder / f"{REPORT_NAME}.txt").write_text(text + "\n", encoding="utf-8")
    csv_path = write_csv(rows, folder / f"{REPORT_NAME}.csv", swept)
    png_path = folder / f"{REPORT_NAME}.png"
    plot_auc(rows, swept).savefig(png_path, dpi=100)
    return Report(rows, text, [folder / f"{REPORT_NAME}.txt", csv_path, png_path], best)


# ---------------------------------------------------------------------------------- callback
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
