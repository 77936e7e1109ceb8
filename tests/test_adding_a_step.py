"""docs/adding_a_step.md, done on a copy of the project: a step folder and one entry in
pipeline.yaml are all it takes. The toy step (tests/fixtures/toy_step, `count_rows`) then
runs in the pipeline after preprocess, and the project's own contract tests cover it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_runs import REPO, mlflow_run, pipeline_env

TOY = REPO / "tests" / "fixtures" / "toy_step"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with the toy step added the documented way."""
    copy = tmp_path_factory.mktemp("project") / "music_genre_classification"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "mlruns", "mlflow.db", "wandb"
        ),
    )
    step = copy / "count_rows"
    step.mkdir()
    for name in ("MLproject", "conda.yml", "README.md", "run.py"):
        shutil.copy(TOY / name, step / name)
    (step / "__init__.py").write_text("")
    with (copy / "pipeline.yaml").open("a") as graph:  # the one entry
        graph.write("\n" + (TOY / "pipeline_entry.yaml").read_text())
    return copy


def test_the_new_step_runs_in_the_pipeline(project: Path, tmp_path: Path) -> None:
    run = mlflow_run(
        tmp_path, "main.execute_steps='get_data,preprocess,count_rows'", uri=project
    ).check()
    assert "[3/3] count_rows FINISHED" in run.result.stdout
    summary = run.result.stdout.split("Pipeline summary", 1)[1]
    # A count shows as one (rows=41975, not rows=41975.0000), on its own step's row only.
    (row,) = [line for line in summary.splitlines() if line.startswith("count_rows ")]
    assert re.search(r"\brows=\d+$", row), row
    assert summary.count("rows=") == 1, summary
    (counted,) = run.runs("tags.`util_lib.step` = 'count_rows'")
    assert counted.data.params["input_artifact"] == "preprocessed_data:v0"
    preprocessed = run.runs("tags.`util_lib.step` = 'preprocess'")
    assert counted.data.metrics["rows"] == preprocessed[0].data.metrics["rows_out"]


def test_the_contract_tests_cover_the_new_step(project: Path) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_step_contract.py", "-k", "count_rows"],
        cwd=project,
        env=pipeline_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout[-3000:]
    for test in (
        "test_every_mlproject_default_is_what_main_passes",
        "test_the_declaration_is_the_mlproject_and_its_command_line",
        "test_each_steps_parser_reads_exactly_the_declared_parameters",
    ):
        assert f"{test}[count_rows] PASSED" in checked.stdout, test
