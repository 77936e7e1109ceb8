"""The configuration's schema and checks (util_lib/config_schema.py) on configurations composed
as Hydra composes them: config.yaml with overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig

from util_lib.config_schema import (
    ENV_MANAGERS,
    GRID_SEARCH_KEYS,
    STEPS,
    ConfigError,
    check_config,
    check_sweep,
    config_problems,
    file_url_problem,
)
from util_lib.graph import load_graph

REPO = Path(__file__).resolve().parents[2]
FOREST = "random_forest_pipeline.random_forest"
DATASET = REPO / "dataset" / "genres_mod.parquet"
GRID = (
    "random_forest_pipeline.grid_search="
    "{param_grid:{classifier__max_depth:[10,20]},cv:3,scoring:roc_auc_ovo}"
)


def composed(*overrides: str, name: str = "config") -> DictConfig:
    """config.yaml (or optuna.yaml) with ``overrides``, composed as main.py's Hydra does."""
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def problems(*overrides: str) -> list[str]:
    return [str(p) for p in config_problems(composed(*overrides))]


@pytest.mark.parametrize("name", ["config", "optuna"])
def test_shipped_configurations_pass(name: str) -> None:
    check_config(composed(name=name))


@pytest.mark.parametrize(
    "overrides",
    [
        ["main.execute_steps='train_random_forest,evaluate'"],
        ["main.execute_steps=evaluate"],
        ["main.execute_steps=[get_data,preprocess]"],
        ["data.sha256=null", "data.stratify=null", "main.env_manager=uv"],
        [f"data.sha256={'AB' * 32}"],
        [f"data.file_url={DATASET}"],
        [f"data.file_url={DATASET.as_uri()}"],
        ["data.file_url='https://example.org/genres_mod.parquet?raw=true'"],
        [f"{FOREST}.max_features=0.5", f"{FOREST}.max_depth=null", f"{FOREST}.criterion=entropy"],
        [f"+{FOREST}.monotonic_cst=null"],
        ["random_forest_pipeline.tfidf.max_features=null", "main.artifact_store=mlflow"],
        ["random_forest_pipeline.features.nlp=[]"],
        ["random_forest_pipeline.predict_n_jobs=null"],
        [GRID],
    ],
)
def test_good_values_pass(overrides: list[str]) -> None:
    assert problems(*overrides) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.test_size=1.5", "data.test_size=1.5: must be a number in (0, 1)"),
        ("data.test_size=0", "data.test_size=0.0: must be a number in (0, 1)"),
        ("data.val_size=1", "data.val_size=1.0: must be a number in (0, 1)"),
        ("data.ks_alpha=-0.1", "data.ks_alpha=-0.1: must be a number in (0, 1)"),
        ("data.ks_alpha=nan", "data.ks_alpha=nan: must be a number in (0, 1)"),
        ("main.execute_steps=[]", "main.execute_steps=[]: must name at least one step"),
        ("main.execute_steps=''", "main.execute_steps='': must name at least one step"),
        (
            "main.execute_steps='train,evaluate'",
            "main.execute_steps='train,evaluate': unknown step(s) ['train']; steps: get_data,",
        ),
        ("main.execute_steps=3", "main.execute_steps=3: must be all, a list or a comma string"),
        ("main.artifact_store=s3", "main.artifact_store='s3': must be one of auto, wandb, mlflow"),
        ("main.env_manager=docker", "main.env_manager='docker': must be null or one of local,"),
        ("main.project_name=''", "main.project_name='': must be a non-empty string"),
        ("data.sha256=abc", "data.sha256='abc': must be null or 64 hex digits"),
        (f"data.sha256={'g' * 64}", "must be null or 64 hex digits"),
        ("data.stratify=''", "data.stratify='': must be null or a column name"),
        ("data.file_url=dataset/nope.parquet", "data.file_url='dataset/nope.parquet': no such"),
        ("data.file_url=file:///nowhere/x.parquet", "no such file /nowhere/x.parquet"),
        ("data.file_url='s3://bucket/x.parquet'", "unsupported scheme 's3'"),
        (f"{FOREST}.max_depth=-1", f"{FOREST}.max_depth=-1: must be an int in the range [1, inf)"),
        (f"{FOREST}.max_features=auto", f"{FOREST}.max_features='auto': must be an int"),
        (f"{FOREST}.n_estimators=0", f"{FOREST}.n_estimators=0: must be an int in the range"),
        (f"{FOREST}.criterion=gain", f"{FOREST}.criterion='gain': must be a str among {{'"),
        (f"{FOREST}.bootstrap=1", f"{FOREST}.bootstrap=1: must be an instance of 'bool'"),
        (f"+{FOREST}.min_impurity_split=0.1", "not an argument of RandomForestClassifier"),
        ("random_forest_pipeline.tfidf.max_features=0", "tfidf.max_features=0: must be null"),
        ("random_forest_pipeline.predict_n_jobs=0", "predict_n_jobs=0: must be null (as trained)"),
        ("random_forest_pipeline.features.numerical=[a,'']", "must be a list of column names"),
        (
            "random_forest_pipeline.features.nlp=[energy]",
            "random_forest_pipeline.features=['energy']: columns listed more than once",
        ),
        ("random_forest_pipeline.export_artifact=''", "must be null or an artifact name"),
        ("random_forest_pipeline.grid_search=3", "grid_search=3: must be null or a mapping"),
        (
            "random_forest_pipeline.grid_search={param_grid:{classifier__max_depth:[5]}}",
            "must be null or a mapping of exactly param_grid, cv, scoring",
        ),
        (
            GRID.replace("[10,20]", "[10,-1]"),
            "param_grid.classifier__max_depth[1]=-1: must be an int in the range [1, inf)",
        ),
        (GRID.replace("classifier__", "clf__"), "param_grid.clf__max_depth=[10, 20]: must be"),
        (GRID.replace("[10,20]", "[]"), "param_grid.classifier__max_depth=[]: must be a non-empty"),
        (GRID.replace("cv:3", "cv:1"), "grid_search.cv=1: must be an int >= 2"),
        (GRID.replace("roc_auc_ovo", "auc"), "grid_search.scoring='auc': must be a scikit-learn"),
    ],
)
def test_each_bad_value_is_named_with_what_is_allowed(override: str, expected: str) -> None:
    found = problems(override)
    assert len(found) == 1, found
    assert expected in found[0]


def test_every_problem_is_listed_at_once() -> None:
    config = composed("data.test_size=1.5", "main.execute_steps=[]", f"{FOREST}.max_depth=0")
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert message.startswith("invalid configuration (3 problems):")
    for key in ("data.test_size=1.5", "main.execute_steps=[]", f"{FOREST}.max_depth=0"):
        assert f"\n  {key}: " in message


def test_the_error_survives_pickling() -> None:
    # A sweep job's error travels back from a joblib worker pickled.
    import pickle

    error = ConfigError("invalid configuration (1 problem):", ["data.test_size=1.5: must be"])
    copy = pickle.loads(pickle.dumps(error))
    assert (
        str(copy)
        == str(error)
        == "invalid configuration (1 problem):\n  data.test_size=1.5: must be"
    )


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_out_of_range_is_named_where_the_forest_gets_it_too(seed: int) -> None:
    found = problems(f"main.random_seed={seed}")
    assert found[0] == f"main.random_seed={seed}: must be an int in [0, 2**32 - 1]"
    assert found[1].startswith(f"{FOREST}.random_state={seed}: must be an int in the range [0,")


def test_a_wrong_type_fails_at_composition_naming_key_and_value() -> None:
    with pytest.raises(ConfigCompositionException) as error:
        composed("data.test_size=abc")
    assert "data.test_size=abc" in str(error.value)
    assert "could not be converted to Float" in str(error.value.__cause__)


def test_a_key_missing_from_config_yaml_is_reported(tmp_path: Path) -> None:
    # config.yaml without main.log_file: the schema has the key, with no value.
    text = (REPO / "config.yaml").read_text()
    (tmp_path / "config.yaml").write_text(text.replace("  log_file: ml_pipeline.log\n", ""))
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        config = compose(config_name="config")
    assert [str(p) for p in config_problems(config)] == [
        "main.log_file='???': missing: config.yaml must give it a value"
    ]


def test_a_relative_path_is_under_the_project_root_wherever_we_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert file_url_problem("dataset/genres_mod.parquet") is None
    assert "no such file" in file_url_problem("genres_mod.parquet")
    (tmp_path / "mine.parquet").write_bytes(b"x")
    assert file_url_problem("mine.parquet", root=tmp_path) is None


def test_a_url_with_credentials_is_masked_in_the_message() -> None:
    found = problems("data.file_url='s3://AKIAKEY:hunter2@bucket/x.parquet'")
    assert "hunter2" not in found[0]
    assert "s3://AKIAKEY:***@bucket/x.parquet" in found[0]


def test_copies_of_other_modules_lists_agree() -> None:
    from mlflow.utils.env_manager import CONDA, LOCAL, UV, VIRTUALENV

    import main
    from train_random_forest import pipeline

    assert main.STEPS == STEPS == tuple(s.name for s in load_graph())
    assert pipeline.GRID_SEARCH_KEYS == GRID_SEARCH_KEYS
    assert set(ENV_MANAGERS) == {LOCAL, CONDA, VIRTUALENV, UV}


def test_importing_the_schema_imports_neither_mlflow_nor_wandb_nor_sklearn() -> None:
    import subprocess
    import sys

    code = (
        "import sys, util_lib.config_schema; "
        "print([m for m in ('mlflow', 'wandb', 'sklearn') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ sweeps
def sweep_error(*overrides: str, name: str = "config", folder: Path = REPO) -> str | None:
    """check_sweep's message for ``-m`` with ``overrides`` (None when every job passes), on the
    multirun's configuration as Hydra's driver composes it."""
    with initialize_config_dir(config_dir=str(folder), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        config = hydra.compose_config(name, list(overrides), run_mode=RunMode.MULTIRUN)
        try:
            check_sweep(config)
        except ConfigError as error:
            return str(error)
    return None


def test_every_job_of_a_grid_is_checked_and_named() -> None:
    message = sweep_error(f"{FOREST}.max_depth=5,-1", "data.ks_alpha=0.05,2")
    assert message == (
        "invalid configuration in 3 of 4 jobs of the sweep; no job was run:\n"
        "  data.ks_alpha=2.0: must be a number in (0, 1)  (jobs 1, 3)\n"
        f"  {FOREST}.max_depth=-1: must be an int in the range [1, inf) or None (scikit-learn)"
        "  (jobs 2, 3)"
    )


def test_a_good_grid_passes() -> None:
    assert sweep_error(f"{FOREST}.max_depth=5,10", "data.test_size=0.2,0.3") is None


def test_a_wrong_type_in_one_job_is_named_before_any_job_runs() -> None:
    message = sweep_error("random_forest_pipeline.tfidf.max_features=5,abc")
    assert "in 1 of 2 jobs" in message
    assert (
        "Error merging override random_forest_pipeline.tfidf.max_features=abc "
        "(Value 'abc' of type 'str' could not be converted to Integer)"
    ) in message
    assert message.endswith("(job 1)")


def test_a_grid_in_the_config_file_is_checked(tmp_path: Path) -> None:
    # hydra.sweeper.params (the basic sweeper's grid in a file), one key overridden by the
    # command line as Hydra's BasicSweeper does.
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "grid.yaml").write_text(
        "defaults: [config, _self_]\n"
        "hydra:\n  sweeper:\n    params:\n"
        f"      {FOREST}.max_depth: 5,-1\n"
        "      data.val_size: 0.2,0.3\n"
    )
    assert "(jobs 2, 3)" in sweep_error(name="grid", folder=tmp_path)
    assert sweep_error(f"{FOREST}.max_depth=7,8", name="grid", folder=tmp_path) is None


def test_optuna_sweeps_check_what_they_do_not_sweep() -> None:
    # Optuna picks each trial's values as it goes: a swept key is left to each job's check.
    assert sweep_error("data.ks_alpha=choice(0.05,1.5)", name="optuna") is None
    assert sweep_error("data.test_size=2", name="optuna") == (
        "invalid configuration of the sweep; no job was run:\n"
        "  data.test_size=2.0: must be a number in (0, 1)"
    )


def test_a_forest_that_passed_is_remembered_and_a_bad_one_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver skips importing scikit-learn for arguments that passed before, under the
    same scikit-learn; a failed check is never remembered."""
    from util_lib.config_schema import forest_problems

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "util_lib" / "forest_checks"
    assert forest_problems({"n_estimators": 10, "max_depth": None}) == []
    (marker,) = folder.iterdir()
    bad = {"n_estimators": -1}
    for _ in range(2):
        (problem,) = forest_problems(bad)
        assert problem.key.endswith(".n_estimators") and "range" in problem.allowed
    assert list(folder.iterdir()) == [marker]
    # Same arguments, other types: a different set (10.0 is no int for scikit-learn).
    assert forest_problems({"n_estimators": 10.0, "max_depth": None})
    assert list(folder.iterdir()) == [marker]
