"""util_lib.pipeline.sweep_report: the report's table, CSV, plot, best job and promote command.

The callback itself (grouping and reporting real sweeps) is exercised by tests/test_sweeps.py.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from util_lib.pipeline.sweep_report import (
    COLUMNS,
    JobRow,
    best_job,
    format_report,
    promote_command,
    swept_keys,
    swept_parameters,
    write_report,
)

REPO = Path(__file__).resolve().parents[2]

DEPTH = "model.max_depth"
TERMS = "random_forest_pipeline.tfidf.max_features"


def _row(job: int, depth: int, terms: int, auc: float | None, status: str = "FINISHED") -> JobRow:
    return JobRow(
        job=job,
        overrides=["main.execute_steps='train_random_forest,evaluate'", f"{DEPTH}={depth}"]
        + [f"{TERMS}={terms}"],
        status=status,
        val_auc=auc,
        test_auc=None if auc is None else auc - 0.01,
        fit_seconds=None if auc is None else 1.5,
        model_export="" if auc is None else f"model_export:v{job + 3}",
        pipeline_run_id=f"run{job}",
    )


@pytest.fixture
def rows() -> list[JobRow]:
    return [
        _row(0, 5, 10, 0.92),
        _row(1, 10, 10, 0.95),
        _row(2, 15, 10, None, status="FAILED"),
        _row(3, 20, 10, 0.94),
    ]


def test_swept_parameters_are_the_varying_model_overrides(rows: list[JobRow]) -> None:
    assert swept_parameters(rows) == [DEPTH]  # not main.*, not the constant tfidf setting
    assert swept_parameters(rows[:1]) == [DEPTH, TERMS]  # one job: everything it overrides


def test_best_job_is_the_finished_one_with_the_highest_validation_auc(rows: list[JobRow]) -> None:
    assert best_job(rows).job == 1
    rows[1].status = "FAILED"
    assert best_job(rows).job == 3
    assert best_job([_row(0, 5, 10, None)]) is None


def test_table_shows_swept_values_metrics_and_versions_best_marked(rows: list[JobRow]) -> None:
    lines = format_report(rows).splitlines()
    assert lines[0].split() == [
        "job",
        "overrides",
        "status",
        "val_auc",
        "test_auc",
        "fit_s",
        "model_export",
    ]
    assert lines[3].split() == [
        "1*",
        "model.max_depth=10",
        "FINISHED",
        "0.9500",
        "0.9400",
        "1.5",
        "model_export:v4",
    ]
    assert lines[4].split() == ["2", "model.max_depth=15", "FAILED", "-", "-", "-", "-"]


def test_write_report_writes_a_row_per_job_a_plot_and_the_promote_command(
    rows: list[JobRow], tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    report = write_report(rows, tmp_path / "sweep", uri, cwd=tmp_path)

    assert [p.name for p in report.files] == [
        "sweep_report.txt",
        "sweep_report.csv",
        "sweep_report.png",
    ]
    with (tmp_path / "sweep" / "sweep_report.csv").open() as stream:
        table = list(csv.DictReader(stream))
    assert [int(r["job"]) for r in table] == [0, 1, 2, 3]
    assert list(table[0]) == [*COLUMNS, DEPTH]
    assert [r[DEPTH] for r in table] == ["5", "10", "15", "20"]
    assert table[2]["val_auc"] == "" and table[2]["status"] == "FAILED"
    assert float(table[1]["val_auc"]) == pytest.approx(0.95)
    assert (tmp_path / "sweep" / "sweep_report.png").read_bytes()[:4] == b"\x89PNG"
    assert "Best job: #1 (model.max_depth=10), val_auc=0.9500" in report.text
    assert "python -m util_lib.artifacts alias model_export:v4 prod --store mlflow" in report.text
    assert (tmp_path / "sweep" / "sweep_report.txt").read_text().strip() == report.text


def test_a_sweep_where_nothing_finished_has_no_best_job(tmp_path: Path) -> None:
    report = write_report([_row(0, 5, 10, None, "FAILED")], tmp_path, "sqlite:///x.db", tmp_path)
    assert report.best is None
    assert "no best job" in report.text


def test_promote_command_names_the_store_unless_it_is_the_default(tmp_path: Path) -> None:
    row = _row(1, 10, 10, 0.95)
    default = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert promote_command(row, default, tmp_path) == (
        "python -m util_lib.artifacts alias model_export:v4 prod --store mlflow"
    )
    assert promote_command(row, "http://127.0.0.1:5000", tmp_path) == (
        "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 "
        "python -m util_lib.artifacts alias model_export:v4 prod --store mlflow"
    )
    # A password in the tracking URI never reaches the report.
    assert promote_command(row, "http://alice:hunter2@h:5000", tmp_path).startswith(
        "MLFLOW_TRACKING_URI=http://alice:***@h:5000 python -m util_lib.artifacts"
    )
    # A W&B job's model is promoted by the same command, in W&B (and the registry it serves).
    row.artifact_store = "wandb"
    assert promote_command(row, default, tmp_path) == (
        "python -m util_lib.artifacts alias model_export:v4 prod --store wandb"
    )


def test_promote_command_names_the_project_unless_it_is_config_yaml_s(tmp_path: Path) -> None:
    from util_lib.artifacts.backends import configured_project

    row = _row(1, 10, 10, 0.95)
    default = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    row.project = configured_project()
    assert promote_command(row, default, tmp_path).endswith(
        "alias model_export:v4 prod --store mlflow"
    )
    row.project = "genres_prod"
    assert promote_command(row, default, tmp_path) == (
        "python -m util_lib.artifacts alias genres_prod/model_export:v4 prod --store mlflow"
    )
    row.artifact_store = "wandb"
    assert promote_command(row, default, tmp_path).endswith(
        "alias genres_prod/model_export:v4 prod --store wandb"
    )


def test_the_sweep_links_its_multirun_run_in_the_model_training_view(tmp_path: Path) -> None:
    from util_lib.pipeline.multirun import JobContext
    from util_lib.pipeline.ui_links import multirun_link

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = JobContext("abc", "2", store, str(tmp_path), str(tmp_path / "sweep"), {})
    assert multirun_link(context) == (
        f"MLflow UI:   mlflow ui --backend-store-uri {store}\n"
        "             then open http://127.0.0.1:5000/#/experiments/2/runs/abc"
        "?workflowType=machine_learning"
    )


def _multirun_config(name: str, *overrides: str):
    """The multirun's configuration as Hydra's driver composes it (what the callback gets)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    import util_lib.pipeline.config  # noqa: F401 - conf/ on the search path

    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        return hydra.compose_config(name, list(overrides), run_mode=RunMode.MULTIRUN)


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        (
            "config",
            [
                "model=random_forest,logistic_regression",
                "model.n_estimators=10",
                "main.execute_steps='train_random_forest,evaluate'",
                "hydra/launcher=basic",
            ],
            ["model"],
        ),
        ("config", [f"{DEPTH}=range(5,15,5)", f"{TERMS}=10,20"], [DEPTH, TERMS]),
        # sweep.yaml sweeps both; the command line's single value wins for max_depth.
        ("sweep", [f"{DEPTH}=8"], [TERMS]),
        ("optuna", [], [DEPTH, "model.min_samples_leaf", "model.max_features", TERMS]),
    ],
)
def test_swept_keys_are_the_sweeps_hydra_parses(
    name: str, overrides: list[str], expected: list[str]
) -> None:
    assert swept_keys(_multirun_config(name, *overrides)) == expected


def test_a_sweep_across_model_families_reports_each_family(tmp_path: Path) -> None:
    rows = [
        JobRow(0, ["model=random_forest", "model.n_estimators=10"], "FINISHED", 0.95, 0.94),
        JobRow(1, ["model=logistic_regression"], "FINISHED", 0.90, 0.89),
    ]
    report = write_report(rows, tmp_path, "sqlite:///x.db", tmp_path, swept=["model"])
    lines = report.text.splitlines()
    assert lines[3].split()[:2] == ["0*", "model=random_forest"]
    assert lines[4].split()[:2] == ["1", "model=logistic_regression"]
    assert "Best job: #0 (model=random_forest), val_auc=0.9500" in report.text
    with (tmp_path / "sweep_report.csv").open() as stream:
        assert [r["model"] for r in csv.DictReader(stream)] == [
            "random_forest",
            "logistic_regression",
        ]
