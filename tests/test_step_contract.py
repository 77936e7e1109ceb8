"""The steps as pipeline.yaml declares them are the steps as they are: each declared parameter is
an MLproject parameter passed on the step's command line and read by its argument parser, and
each step runs on its own: every MLproject default is what main.py passes with the default
config, so no default can drift from config.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from train_random_forest.model_config import read_model_config
from util_lib.pipeline.setup import STEPS, step_parameters
from util_lib.step.arguments import project_path
from util_lib.step.contract import chosen_contract_file, read_contract

REPO = Path(__file__).resolve().parents[1]
# Parameters whose value is a local path: compared once resolved as the step resolves them.
PATHS = {("get_data", "file_url")}
# The model's settings: main.py writes the section and the model group's choice to files, the
# defaults name config.yaml and the default file of conf/model/.
MODEL_CONFIG = ("train_random_forest", "model_config")
MODEL = ("train_random_forest", "model")
# The data contract: main.py writes the config group dataset's choice to a file; the defaults
# name the file of conf/dataset/ that config.yaml chooses.
DATASET = "dataset"


@pytest.fixture(scope="module")
def passed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    """What main.py passes to each step with config.yaml as it is (composed as Hydra does)."""
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        config = compose(config_name="config")
    outputs = tmp_path_factory.mktemp("outputs")
    return {step: step_parameters(step, config, {}, outputs) for step in STEPS}


def _defaults(step: str) -> dict[str, object]:
    mlproject = yaml.safe_load((REPO / step / "MLproject").read_text())
    parameters = mlproject["entry_points"]["main"]["parameters"]
    missing = [name for name, spec in parameters.items() if "default" not in spec]
    assert not missing, f"{step}/MLproject: no default for {missing}"
    return {name: spec["default"] for name, spec in parameters.items()}


@pytest.mark.parametrize("step", STEPS)
def test_every_mlproject_default_is_what_main_passes(step: str, passed) -> None:
    defaults, given = _defaults(step), passed[step]
    assert set(defaults) == set(given), step
    for name, default in defaults.items():
        if (step, name) == MODEL_CONFIG:
            assert read_model_config(str(default), str(defaults["model"])) == read_model_config(
                str(given[name]), str(given["model"])
            )
        elif (step, name) == MODEL:
            assert read_model_config("config.yaml", str(default)) == read_model_config(
                "config.yaml", str(given[name])
            )
        elif name == DATASET:
            assert project_path(str(default)) == str(chosen_contract_file()), step
            assert read_contract(str(default)) == read_contract(str(given[name])), step
        elif (step, name) in PATHS:
            assert project_path(str(default)) == str(given[name]), name
        else:
            assert str(default) == str(given[name]), f"{step}/MLproject {name}"


def test_inputs_default_to_the_current_version(passed) -> None:
    """Run on its own, a step reads what the last pipeline used or wrote
    (util_lib/pipeline/graph.py)."""
    assert _defaults("preprocess")["input_artifact"] == "raw_data.parquet:current"
    assert _defaults("evaluate") == {
        "model_export": "model_export:current",
        "test_data": "data_test:current",
        "dataset": "conf/dataset/genres.yaml",
    }


def test_the_model_config_default_reads_config_yaml_resolved() -> None:
    section = read_model_config("config.yaml")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert section["model"]["random_state"] == config["main"]["random_seed"]
    assert section["model"]["_target_"] == "sklearn.ensemble.RandomForestClassifier"
    # The features: the data contract's roles (conf/dataset/), not a list in config.yaml.
    assert "features" not in config["random_forest_pipeline"]
    assert section["features"] == read_contract(chosen_contract_file()).features()
    assert section["features"]["categorical"] == ["time_signature", "key"]


def test_each_step_readme_gives_its_standalone_call() -> None:
    for step in STEPS:
        readme = (REPO / step / "README.md").read_text()
        # The call with no -P at all: every parameter at its default.
        assert f"mlflow run {step} --env-manager local\n" in readme, step


def _mlproject(step: str) -> dict:
    return yaml.safe_load((REPO / step / "MLproject").read_text())["entry_points"]["main"]


@pytest.mark.parametrize("step", STEPS)
def test_the_declaration_is_the_mlproject_and_its_command_line(step: str) -> None:
    from util_lib.pipeline.graph import get_step

    declared = [p.name for p in get_step(step).parameters]
    entry = _mlproject(step)
    assert list(entry["parameters"]) == declared, step
    for name in declared:
        assert f"--{name} {{{name}}}" in entry["command"], (step, name)


@pytest.mark.parametrize("step", [s for s in STEPS if s != "check_data"])
def test_each_steps_parser_reads_exactly_the_declared_parameters(step: str, passed) -> None:
    import importlib

    parse_args = importlib.import_module(f"{step}.run").parse_args
    argv = [item for name, value in passed[step].items() for item in (f"--{name}", str(value))]
    assert sorted(vars(parse_args(argv))) == sorted(passed[step]), step


@pytest.mark.integration
def test_the_data_checks_pytest_options_are_the_declared_parameters() -> None:
    """check_data's MLproject runs pytest: its conftest adds the parameters as options."""
    import os
    import re
    import subprocess
    import sys

    from util_lib.pipeline.graph import get_step

    shown = subprocess.run(
        [sys.executable, "-m", "pytest", "check_data", "--help", "-p", "no:cacheprovider"],
        cwd=REPO,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("data-check step:", 1)[1].split("\n\n", 1)[0]
    options = re.findall(r"--(\w+)=", section)
    assert options == [p.name for p in get_step("check_data").parameters]


def test_every_step_reads_null_the_same_way() -> None:
    """One reading of optional values (util_lib.step.arguments.optional): no step keeps its own set
    of spellings of null, as three steps did ("none" meant no stratification in one step and a
    column named "none" in another)."""
    import ast

    for step in STEPS:
        for source in (REPO / step).glob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Tuple | ast.Set | ast.List):
                    values = {getattr(e, "value", None) for e in node.elts}
                    assert "null" not in values, f"{source}: {ast.unparse(node)}"
