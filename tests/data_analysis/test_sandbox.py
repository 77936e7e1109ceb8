"""data_analysis: the notebooks' set-up (sandbox.py) and what the stored notebooks hold."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import mlflow
import nbformat
import pytest
from omegaconf import OmegaConf

from data_analysis.sandbox import config_updates, hydra_overrides, log_notebook, setup_sandbox
from tests.data_analysis.notebook_runs import NOTEBOOKS, REPO
from util_lib.step.run import open_run

# What setup_sandbox may set: cleared before each test and restored after it.
SANDBOX_ENV = (
    "MLFLOW_EXPERIMENT_NAME",
    "WANDB_PROJECT",
    "WANDB_RUN_GROUP",
    "UTIL_LIB_ARTIFACT_STORE",
    "PYTHONPATH",
)
MODEL_CONFIG = {
    "model": {"max_depth": 13, "max_features": "sqrt"},
    "tfidf": {"max_features": 10},
}


@pytest.fixture(autouse=True)
def _sandbox_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SANDBOX_ENV:
        # setenv first so monkeypatch records the variable even when it was unset: delenv
        # alone records nothing then, and what setup_sandbox sets would leak into later tests
        # (an MLFLOW_EXPERIMENT_NAME left behind made concurrent writers race to create it).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "data_analysis" / name, as_version=4)


def _code(name: str) -> str:
    return "\n".join(c.source for c in _read(name).cells if c.cell_type == "code")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_valid_without_outputs(name: str) -> None:
    notebook = _read(name)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    # Outputs are made by running the notebook (CI does, headless), never stored: none can be
    # stale or made by hand.
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize(
    ("name", "imports", "not_copied"),
    [
        ("EDA_Tracking.ipynb", "from preprocess.cleaning import", "def preprocess("),
        (
            "Modeling.ipynb",
            "from train_random_forest.pipeline import build_pipeline",
            "def build_pipeline(",
        ),
        # The model's own imputation and scaling, not a second copy of them.
        (
            "UnsupervisedLearning.ipynb",
            "from train_random_forest.pipeline import build_pipeline",
            "StandardScaler(",
        ),
    ],
)
def test_notebook_uses_the_pipelines_code(name: str, imports: str, not_copied: str) -> None:
    code = _code(name)
    assert imports in code
    assert not_copied not in code
    assert "from util_lib.step.run import open_run" in code
    assert "run.use_artifact(" in code and "log_notebook(run," in code


def test_clustering_notebook_takes_its_settings_from_config_yaml() -> None:
    code = _code("UnsupervisedLearning.ipynb")
    assert 'model_config["features"]["numerical"]' in code
    assert "config.main.random_seed" in code
    # No feature retyped: the list is the data contract's.
    from util_lib.step.contract import default_contract

    for feature in default_contract().features()["numerical"]:
        assert f'"{feature}"' not in code, feature
    # Every random step gets the seed.
    for call in ("KMeans(", "GaussianMixture(", "TSNE(", "default_rng("):
        assert re.search(re.escape(call) + r"[^)]*(random_state=SEED|SEED)", code, re.S), call


def test_clustering_notebook_types_no_conclusion() -> None:
    # Its findings are printed from the computed numbers; the text around them holds none.
    notebook = _read("UnsupervisedLearning.ipynb")
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert not re.findall(r"\d\.\d|\d\s*%|\bk\s*=\s*\d|ARI (?:of )?\d", text)


def test_config_updates_maps_pipeline_parameters_to_config_keys() -> None:
    best = {
        "classifier__max_depth": 20,
        "classifier__max_features": "sqrt",
        "processor__nlp_text_feature__tfidfvectorizer__max_features": 30,
    }
    assert config_updates(best, MODEL_CONFIG) == {
        "model.max_depth": 20,
        "random_forest_pipeline.tfidf.max_features": 30,
    }
    assert config_updates({"classifier__max_depth": 13}, MODEL_CONFIG) == {}
    assert config_updates({"classifier__max_depth": 13}, {}) == {"model.max_depth": 13}


def test_config_updates_refuses_a_parameter_without_a_config_key() -> None:
    with pytest.raises(KeyError, match="processor__numerical__simpleimputer__strategy"):
        config_updates({"processor__numerical__simpleimputer__strategy": "mean"}, MODEL_CONFIG)


def test_hydra_overrides_writes_yaml_literals() -> None:
    updates = {"a.max_depth": None, "a.bootstrap": False, "a.max_features": "log2", "a.n": 5}
    assert (
        hydra_overrides(updates) == "a.max_depth=null a.bootstrap=false a.max_features=log2 a.n=5"
    )


def test_setup_sandbox_keeps_the_environment_and_fills_the_rest(tracking: Path) -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    config = setup_sandbox(REPO)
    project = OmegaConf.load(REPO / "config.yaml").main
    assert config.main.project_name == project.project_name
    assert os.environ["MLFLOW_TRACKING_URI"] == uri == mlflow.get_tracking_uri()
    assert os.environ["ML_PIPELINE_LOG"] == str(tracking / "ml_pipeline.log")
    assert os.environ["WANDB_PROJECT"] == project.project_name
    assert os.environ["WANDB_RUN_GROUP"] == project.experiment_name
    assert os.environ["UTIL_LIB_ARTIFACT_STORE"] == project.artifact_store
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    # A notebook's run lands in the pipeline's experiment.
    run = open_run(step="eda", job_type="eda")
    run.close()
    experiment = mlflow.get_experiment(mlflow.get_run(run.run_id).info.experiment_id)
    assert experiment.name == project.project_name


def test_setup_sandbox_leaves_a_given_experiment_alone(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    setup_sandbox(REPO)
    assert "MLFLOW_EXPERIMENT_NAME" not in os.environ


def test_setup_sandbox_defaults_to_the_projects_store(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tracking / "project"
    root.mkdir()
    (root / "config.yaml").write_text((REPO / "config.yaml").read_text())
    for name in ("MLFLOW_TRACKING_URI", "ML_PIPELINE_LOG", "WANDB_DIR"):
        monkeypatch.delenv(name)
    setup_sandbox(root)
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{root / 'mlflow.db'}"
    run = open_run(step="eda", job_type="eda")
    run.close()
    assert mlflow.get_tracking_uri() == os.environ["MLFLOW_TRACKING_URI"]
    assert (root / "mlflow.db").is_file()
    assert os.environ["ML_PIPELINE_LOG"] == str(root / "ml_pipeline.log")
    assert os.environ["WANDB_DIR"] == str(root)


def test_log_notebook_saves_the_file_with_the_run(tracking: Path) -> None:
    notebook = tracking / "Some.ipynb"
    notebook.write_text(json.dumps({"cells": []}))
    run = open_run(step="eda", job_type="eda")
    digest = log_notebook(run, notebook)
    run.close()
    assert digest == hashlib.sha256(notebook.read_bytes()).hexdigest()
    logged = mlflow.get_run(run.run_id)
    assert logged.data.tags["util_lib.notebook_sha256"] == digest
    copy = mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="code/Some.ipynb")
    assert Path(copy).read_bytes() == notebook.read_bytes()


def test_log_notebook_names_a_missing_file(tracking: Path) -> None:
    run = open_run(step="eda", job_type="eda")
    with pytest.raises(FileNotFoundError, match="Nowhere.ipynb"):
        log_notebook(run, tracking / "Nowhere.ipynb")
    run.close(failed=True)
