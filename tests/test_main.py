"""main.py's plain parts: step selection, parameters handed to each step, the summary."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from util_lib.pipeline.setup import STEPS, selected_steps, step_parameters, step_uri
from util_lib.pipeline.summary import StepResult, format_summary

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    """config.yaml composed as main.py's Hydra composes it (the model from conf/model/)."""
    from hydra import compose, initialize_config_dir

    import util_lib.pipeline.config  # noqa: F401 - conf/ on the search path

    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        return compose(config_name="config")


def test_selected_steps_keeps_pipeline_order() -> None:
    assert selected_steps(["evaluate", "get_data"]) == ["get_data", "evaluate"]
    assert selected_steps("train_random_forest, evaluate") == ["train_random_forest", "evaluate"]
    assert selected_steps(list(STEPS)) == list(STEPS)


def test_unknown_step_is_named() -> None:
    with pytest.raises(ValueError, match="'trian'"):
        selected_steps("trian,evaluate")


def test_each_step_gets_the_exact_version_written_upstream(config, tmp_path: Path) -> None:
    written = {"raw_data.parquet": "raw_data.parquet:v3", "data_train": "data_train:v1"}
    params = {s: step_parameters(s, config, written, tmp_path) for s in STEPS}
    assert params["preprocess"]["input_artifact"] == "raw_data.parquet:v3"
    assert params["check_data"]["sample_artifact"] == "preprocessed_data:current"
    assert params["check_data"]["reference_artifact"] == "preprocessed_data:reference"
    assert params["train_random_forest"]["train_data"] == "data_train:v1"
    model_config = tmp_path / "random_forest_pipeline.yaml"
    assert params["train_random_forest"]["model_config"] == str(model_config)
    assert not OmegaConf.load(model_config).get("random_forest")  # moved to the model group
    model = tmp_path / "model.yaml"
    assert params["train_random_forest"]["model"] == str(model)
    assert OmegaConf.load(model).n_estimators == 50
    assert params["evaluate"] == {
        "model_export": "model_export:current",
        "test_data": "data_test:current",
        "dataset": str(tmp_path / "dataset.yaml"),
    }
    # The data contract the config group dataset chose, resolved, for each step that reads it.
    assert OmegaConf.load(tmp_path / "dataset.yaml").target == "genre"
    assert params["segregate"]["stratify"] == "genre"  # data.stratify: the contract's target
    assert params["segregate"]["random_seed"] == str(config.main.random_seed)
    assert params["get_data"]["sha256"] == config.data.sha256
    # The shipped dataset, under the project root wherever the pipeline runs from.
    assert params["get_data"]["file_url"] == str(REPO / "dataset" / "genres_mod.parquet")


def test_every_step_parameter_is_declared_in_its_mlproject(config, tmp_path: Path) -> None:
    import yaml

    for step in STEPS:
        mlproject = yaml.safe_load((REPO / step / "MLproject").read_text())
        declared = set(mlproject["entry_points"]["main"]["parameters"])
        given = set(step_parameters(step, config, {}, tmp_path))
        assert given == declared, step


def test_summary_table_lists_steps_artifacts_and_metrics() -> None:
    results = [
        StepResult(
            "train_random_forest", "FINISHED", 12.3, "r1", ["model_export:v2"], {"val_auc": 0.95123}
        ),
        StepResult("evaluate", "FAILED", 1.0, "r2"),
    ]
    table = format_summary(results)
    assert "model_export:v2" in table and "val_auc=0.9512" in table
    assert "FAILED" in table.splitlines()[-1]


def test_steps_come_from_beside_main_py_by_default() -> None:
    assert step_uri("evaluate", None, None) == (str(REPO / "evaluate"), None)


def test_steps_come_from_a_components_repository_at_its_version() -> None:
    url = "https://git.example.com/team/components.git"
    assert step_uri("segregate", url + "/", "v1.2") == (f"{url}#segregate", "v1.2")
    assert step_uri("segregate", url, None) == (f"{url}#segregate", None)


def test_bad_components_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="main.components_version='v1' needs"):
        step_uri("get_data", None, "v1")
    with pytest.raises(ValueError, match="local folder"):
        step_uri("get_data", str(tmp_path), "v1")
    with pytest.raises(ValueError, match="#<step>"):
        step_uri("get_data", "https://h/r.git#get_data", None)


def test_steps_inherit_the_env_manager_and_docker_means_the_image(tracking: Path) -> None:
    from mlflow import MlflowClient

    from util_lib.pipeline.setup import step_env_manager as _env_manager

    client = MlflowClient()
    experiment = client.create_experiment("env")
    config = OmegaConf.create({"main": {"env_manager": None}})

    def launcher(tags: dict[str, str]):
        return client.get_run(client.create_run(experiment, tags=tags).info.run_id)

    assert _env_manager(config, launcher({"mlflow.project.env": "uv"})) == "uv"
    assert _env_manager(config, launcher({"mlflow.project.env": "docker"})) == "local"
    assert _env_manager(config, launcher({})) == "local"
    config.main.env_manager = "virtualenv"
    assert _env_manager(config, launcher({"mlflow.project.env": "uv"})) == "virtualenv"


def test_the_summary_never_prints_a_tracking_password(capsys, tmp_path: Path) -> None:
    from util_lib.pipeline.summary import print_where_to_look as _print_where_to_look

    results = [StepResult("evaluate", "FINISHED", 1.0, "r", [], {"test_auc": 0.95})]
    _print_where_to_look(results, tmp_path / "log", "http://alice:hunter2@h:5000", "disabled")
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "mlflow ui --backend-store-uri http://alice:***@h:5000" in out


def test_the_summary_links_the_pipeline_run_in_the_model_training_view(
    capsys, tmp_path: Path
) -> None:
    from util_lib.pipeline.summary import print_where_to_look as _print_where_to_look

    results = [StepResult("evaluate", "CACHED", 0.1, "r", [], {"test_auc": 0.95})]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _print_where_to_look(results, tmp_path / "log", store, "disabled", ("3", "abc123"))
    out = capsys.readouterr().out
    assert f"MLflow UI:   mlflow ui --backend-store-uri {store}" in out
    assert (
        "then open http://127.0.0.1:5000/#/experiments/3/runs/abc123?workflowType=machine_learning"
    ) in out
    server = "https://u:pw@mlflow.team:5000"
    _print_where_to_look(results, tmp_path / "log", server, "off", ("3", "a"))
    out = capsys.readouterr().out
    assert "MLflow UI:   https://u:***@mlflow.team:5000/#/experiments/3/runs/a?workflowType" in out


def test_counts_print_as_integers_and_other_values_with_four_decimals() -> None:
    results = [
        StepResult("count_rows", "FINISHED", 1.0, "r1", [], {"rows": 42896.0}),
        StepResult("train_random_forest", "FINISHED", 2.0, "r2", [], {"val_auc": 0.95391}),
    ]
    table = format_summary(results)
    assert re.search(r"\brows=42896$", table, re.M) and "42896.0" not in table
    assert "val_auc=0.9539" in table


def test_a_step_s_row_shows_only_the_metrics_pipeline_yaml_declares_for_it(tracking: Path) -> None:
    """evaluate's run logs val_auc too (the model's): that is train_random_forest's metric."""
    from mlflow import MlflowClient

    from util_lib.pipeline.summary import record_result

    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("rows")).info.run_id
    for key, value in {"test_auc": 0.95, "val_auc": 0.96, "test_accuracy": 0.7}.items():
        client.log_metric(run_id, key, value)
    result = StepResult("evaluate")
    record_result(result, client.get_run(run_id))
    assert result.metrics == {"test_auc": 0.95}
    row = format_summary([result]).splitlines()[-1]
    assert "test_auc=0.9500" in row and "val_auc" not in row


def test_the_summary_reaches_the_terminal_once_and_the_log_file_too(capsys, tracking: Path) -> None:
    """Even with the driver's log lines on the terminal (main.verbose=true)."""
    import logging

    from util_lib.pipeline.summary import print_where_to_look as _print_where_to_look
    from util_lib.step.logs import setup_logging

    log_file = setup_logging("main", console_level=logging.INFO)
    results = [StepResult("evaluate", "FINISHED", 1.0, "r", [], {"test_auc": 0.95})]
    _print_where_to_look(results, log_file, "sqlite:///x.db", "disabled")
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("test_auc=0.9500") == 1, captured
    assert log_file.read_text().count("test_auc=0.9500") == 1


@pytest.mark.integration
def test_a_moved_key_stops_main_naming_the_new_key_in_its_last_line(tmp_path: Path) -> None:
    """Hydra would refuse random_forest_pipeline.random_forest.* without saying where it went
    (util_lib/pipeline/config_model.py MOVED_KEYS); main.py names the new key first."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "main.py"),
            "random_forest_pipeline.random_forest.max_depth=20",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "  random_forest_pipeline.random_forest.max_depth=20: moved: the model is the config "
        "group 'model' (conf/model/, chosen with model=NAME); set model.max_depth=20 instead"
    )
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "outputs").exists()
