"""docs/your_own_data.md, followed as written in a copy of the project: scikit-learn's wine
data written to Parquet, its data contract inferred (``python -m util_lib.step.contract
infer``) and the whole pipeline run on it with ``dataset=wine``, no code changed, each command
printing what the guide shows (tests/test_readme_commands.py's conventions and runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.pipeline_runs import sqlite_uri
from tests.test_readme_commands import REPO, copy_project, readme_commands, run_commands
from util_lib.step.contract import read_contract

pytestmark = pytest.mark.e2e

GUIDE = REPO / "docs" / "your_own_data.md"


def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    commands = readme_commands(GUIDE.read_text(encoding="utf-8"), sections=None)
    texts = [c.text for c in commands]
    assert any(
        t.startswith("python -m util_lib.step.contract infer dataset/wine.parquet") for t in texts
    )
    assert any('hydra_options="dataset=wine main.project_name=wine"' in t for t in texts)
    project = copy_project(tmp_path)
    run_commands(commands, project)
    # Another shape: no text column, another target, every feature numerical.
    contract = read_contract(project / "conf" / "dataset" / "wine.yaml")
    assert contract.target == "cultivar" and contract.labels == ("class_0", "class_1", "class_2")
    assert contract.features()["nlp"] == [] and len(contract.features()["numerical"]) == 13
    # Its own project: the model is registered under its name, not beside the songs' models.
    client = MlflowClient(sqlite_uri(project))
    assert client.get_registered_model("wine").latest_versions
    assert not client.search_registered_models("name = 'music_genre_classification'")
    assert client.get_experiment_by_name("wine") is not None
