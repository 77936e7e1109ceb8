"""A sweep's jobs, as its report shows them: each job's row read from MLflow
(:func:`collect_jobs`), the parameters the sweep varies (:func:`swept_keys`,
:func:`swept_parameters`), the best job (:func:`best_job`) and the command that promotes its
model (:func:`promote_command`).

The report's files are :mod:`util_lib.pipeline.sweep_files`; the Hydra callback that collects
and writes them after the last job is :mod:`util_lib.pipeline.sweep_report`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from omegaconf import DictConfig

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
