"""The configuration's schema and checks (util_lib/pipeline/config.py) on configurations composed
as Hydra composes them: config.yaml with overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig

from util_lib.pipeline.config import check_config, check_sweep, config_problems
from util_lib.pipeline.config_checks import STEPS, ConfigError
from util_lib.pipeline.config_data import file_url_problem
from util_lib.pipeline.config_model import GRID_SEARCH_KEYS
from util_lib.pipeline.config_rules import ENV_MANAGERS
from util_lib.pipeline.graph import load_graph

REPO = Path(__file__).resolve().parents[2]
FOREST = "model"  # the default model, a random forest
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
        ["dataset.text_feature=null"],  # no text feature: the model reads no text
        ["dataset.columns.mode.feature=true"],
        ["random_forest_pipeline.predict_n_jobs=null"],
        [GRID],
        ["model=hist_gradient_boosting"],
        ["model=hist_gradient_boosting", "model.max_depth=5", "+model.max_bins=63"],
        ["model=logistic_regression", "model.C=0.5", GRID.replace("max_depth", "C")],
    ],
)
def test_good_values_pass(overrides: list[str]) -> None:
    assert problems(*overrides) == []


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.test_size=1.5", "data.test_size=1.5: must be a number in (0, 1)"),
        ("data.test_size=0", "data.test_size=0: must be a number in (0, 1)"),
        ("data.val_size=1", "data.val_size=1: must be a number in (0, 1)"),
        ("data.ks_alpha=-0.1", "data.ks_alpha=-0.1: must be a number in (0, 1)"),
        ("data.ks_alpha=nan", "data.ks_alpha=nan: must be a number in (0, 1)"),
        ("main.execute_steps=[]", "main.execute_steps=[]: must name at least one step of: "),
        ("main.execute_steps=''", "main.execute_steps='': must name at least one step"),
        (
            "main.execute_steps='train,evaluate'",
            "main.execute_steps='train,evaluate': unknown step(s) ['train']; steps: get_data,",
        ),
        ("main.execute_steps=3", "main.execute_steps=3: must be all, a list or a comma string"),
        ("main.artifact_store=s3", "main.artifact_store='s3': must be one of auto, wandb, mlflow"),
        ("main.env_manager=docker", "main.env_manager='docker': must be null or one of local,"),
        ("main.experiment_name=''", "main.experiment_name='': must be a non-empty string"),
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
        (
            "dataset.columns.energy.role=nlp",
            "dataset='NAME': data contract conf/dataset/NAME.yaml: columns.energy.role='nlp': "
            "must be null or one of numerical, categorical, text",
        ),
        (
            "+random_forest_pipeline.features.nlp=[energy]",
            "random_forest_pipeline.features={'nlp': ['energy']}: moved: the features are the "
            "data contract's",
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


def test_a_target_the_contract_lacks_is_named() -> None:
    found = problems("dataset.target=genr")
    assert "target='genr': must be one of the columns: danceability," in found[0], found
    # data.stratify is the target: the data file has no such column either.
    assert found[1:] == [
        "data.stratify='genr': no such column in dataset/genres_mod.parquet "
        "(the closest is 'genre')"
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model=logistic_regression", "+model.max_depth=3"],
            "model.max_depth=3: not an argument of LogisticRegression (scikit-learn 1.",
        ),
        (
            ["model=hist_gradient_boosting", "model.learning_rate=-1"],
            "model.learning_rate=-1: must be a float in the range (0.0, inf) (scikit-learn)",
        ),
        (
            ["model=logistic_regression", GRID],
            "grid_search.param_grid.classifier__max_depth[0]=10: not an argument of "
            "LogisticRegression",
        ),
        (
            ["model._target_=xgboost.XGBClassifier"],
            "model._target_='xgboost.XGBClassifier': must be a class of scikit-learn (sklearn.*)",
        ),
        (
            ["model._target_=sklearn.ensemble.NoSuchForest"],
            "model._target_='sklearn.ensemble.NoSuchForest': no such class in scikit-learn",
        ),
        (
            ["model._target_=sklearn.ensemble.RandomForestRegressor"],
            "model._target_='sklearn.ensemble.RandomForestRegressor': not a classifier class",
        ),
        (
            ["+random_forest_pipeline.random_forest.max_depth=20"],
            "random_forest_pipeline.random_forest={'max_depth': 20}: moved: the model is the "
            "config group 'model' (conf/model/, chosen with model=NAME); set model.<argument>",
        ),
    ],
)
def test_each_bad_model_setting_is_named(overrides: list[str], expected: str) -> None:
    found = problems(*overrides)
    assert any(expected in p for p in found), found


def test_an_old_key_on_the_command_line_names_the_new_one() -> None:
    """Hydra refuses it before any check (config.yaml has no such key): main.py looks at the
    command line first."""
    from util_lib.pipeline.config_model import moved_key_problems

    assert (
        moved_key_problems(["model.max_depth=20", "random_forest_pipeline.tfidf.max_features=5"])
        == []
    )
    (found,) = moved_key_problems(["random_forest_pipeline.random_forest.max_depth=10,20"])
    assert found.startswith("random_forest_pipeline.random_forest.max_depth=10,20: moved:")
    assert found.endswith("set model.max_depth=10,20 instead")
    with pytest.raises(ConfigCompositionException):
        composed("random_forest_pipeline.random_forest.max_depth=20")


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


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.test_size=abc", "data.test_size='abc': must be a number in (0, 1)"),
        ("main.random_seed=7.0", "main.random_seed=7.0: must be an int in [0, 2**32 - 1]"),
        ("main.cache=1", "main.cache=1: must be true or false"),
        ("data.allow_unchecked=yes", "data.allow_unchecked='yes': must be true or false"),
        (
            "main.experiment_name=2024",
            "main.experiment_name=2024: must be a non-empty string (Hydra reads 2024 as a "
            "number: quote it, '2024')",
        ),
        (
            "main.components_version=1.10",
            "main.components_version=1.1: must be null or a git tag, branch or commit",
        ),
        ("random_forest_pipeline.tfidf=5", "random_forest_pipeline.tfidf=5: must be a mapping"),
    ],
)
def test_a_wrong_type_is_named_with_its_key_and_value(override: str, expected: str) -> None:
    # Exact types: no value is converted (Hydra reads 1.10 as the number 1.1, not the tag).
    found = problems(override)
    assert found[0].startswith(expected), found
    # The seed is the model's random_state too: scikit-learn names it there as well.
    assert len(found) == 1 + override.startswith("main.random_seed"), found


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("+main.foo=1", "main.foo=1: no such key in main; its keys: project_name, "),
        ("+tfidf.max_features=5", "tfidf={'max_features': 5}: no such key in the configuration"),
        (
            "+random_forest_pipeline.grid_search.cv=3",
            "random_forest_pipeline.grid_search={'cv': 3}: must be null or a mapping of exactly",
        ),
    ],
)
def test_a_key_that_no_rule_knows_is_named(override: str, expected: str) -> None:
    # Hydra refuses `main.foo=1` (struct mode); `+` adds the key, which the rules refuse.
    with pytest.raises(ConfigCompositionException):
        composed(override.lstrip("+"))
    (found,) = problems(override)
    assert found.startswith(expected), found


def test_a_value_that_does_not_resolve_is_named_once_among_the_others() -> None:
    # Not again by its rule: the reading names it.
    assert problems("main.experiment_name=${nope.key}", "data.test_size=abc") == [
        "main.experiment_name='${nope.key}': Interpolation key 'nope.key' not found",
        "data.test_size='abc': must be a number in (0, 1)",
    ]


def test_a_key_missing_from_config_yaml_is_reported(tmp_path: Path) -> None:
    # config.yaml without main.log_file: the rules have the key, config.yaml no value.
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

    import util_lib.pipeline.setup as main
    from train_random_forest import pipeline

    assert main.STEPS == STEPS == tuple(s.name for s in load_graph())
    assert pipeline.GRID_SEARCH_KEYS == GRID_SEARCH_KEYS
    assert set(ENV_MANAGERS) == {LOCAL, CONDA, VIRTUALENV, UV}


@pytest.mark.integration
def test_importing_the_checks_imports_neither_pydantic_mlflow_wandb_nor_sklearn() -> None:
    import subprocess
    import sys

    code = (
        "import sys, util_lib.pipeline.config; "
        "print([m for m in ('pydantic', 'mlflow', 'wandb', 'sklearn') if m in sys.modules])"
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
        "  data.ks_alpha=2: must be a number in (0, 1)  (jobs 1, 3)\n"
        f"  {FOREST}.max_depth=-1: must be an int in the range [1, inf) or None (scikit-learn)"
        "  (jobs 2, 3)"
    )


def test_a_good_grid_passes() -> None:
    assert sweep_error(f"{FOREST}.max_depth=5,10", "data.test_size=0.2,0.3") is None


def test_a_wrong_type_in_one_job_is_named_before_any_job_runs() -> None:
    message = sweep_error("random_forest_pipeline.tfidf.max_features=5,abc")
    assert "in 1 of 2 jobs" in message
    assert (
        "random_forest_pipeline.tfidf.max_features='abc': must be null (every term) or an int "
        ">= 1  (job 1)"
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
        "  data.test_size=2: must be a number in (0, 1)"
    )


def test_a_model_that_passed_is_remembered_and_a_bad_one_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver skips importing scikit-learn for arguments that passed before, under the
    same scikit-learn; a failed check is never remembered."""
    from util_lib.pipeline.config_estimator import estimator_problems

    def forest_problems(arguments: dict) -> list:
        return estimator_problems("sklearn.ensemble.RandomForestClassifier", arguments)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "util_lib" / "model_checks"
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
    # The same arguments for another class are another set.
    hgb = "sklearn.ensemble.HistGradientBoostingClassifier"
    assert estimator_problems(hgb, {"max_depth": None}) == []
    assert len(list(folder.iterdir())) == 2


# ------------------------------------------------------------------ what would fail after steps
# Each probe value below used to pass the check and fail later: after steps ran, or with a
# traceback. Each comes with a valid counterpart that passes.
def _refused_by_mlflow_or_wandb(name: str) -> list[str]:
    """The validators of MLflow and W&B (their own code) that refuse ``name`` where the
    pipeline uses it: W&B project and artifact, MLflow registered model (on a SQL and a file
    store, alone and as the embedded store's ``<project>.<name>``) and experiment."""
    import wandb
    from mlflow.store.model_registry.file_store import _validate_model_name as file_store_rule
    from mlflow.utils.validation import _validate_experiment_name, _validate_model_name
    from wandb.sdk.artifacts._validators import validate_artifact_name, validate_project_name

    from util_lib.artifacts.interface import registry_name

    rules = {
        "wandb project": validate_project_name,
        "wandb settings": lambda n: wandb.Settings(project=n),
        "wandb artifact": validate_artifact_name,
        "mlflow model": _validate_model_name,
        "mlflow file store model": file_store_rule,
        "store model of project": lambda n: _validate_model_name(registry_name(n, "model")),
        "store model of artifact": lambda n: _validate_model_name(registry_name("p", n)),
        "mlflow experiment": _validate_experiment_name,
    }
    refused = []
    for what, rule in rules.items():
        try:
            rule(name)
        except Exception:  # noqa: BLE001 - each library raises its own kind
            refused.append(what)
    return refused


def test_the_name_rule_refuses_whatever_mlflow_or_wandb_refuses() -> None:
    from util_lib.artifacts.interface import name_problem

    candidates = [
        *(f"a{c}b" for c in "/\\#?%:'\"\r\n\t"),
        *("..", ".", "..a", "a..", "a/.."),
        *("", " ", " a", "a ", "x" * 128, "x" * 129, "x" * 501),
        *("music_genre_classification", "a.b", "genres-v2", "my project", "Ünïcode"),
    ]
    refused = {name: _refused_by_mlflow_or_wandb(name) for name in candidates}
    assert [n for n in candidates if refused[n] and name_problem(n) is None] == []
    # The rule is not a blanket refusal: plain names pass, as MLflow and W&B take them.
    for name in ("music_genre_classification", "a.b", "genres-v2", "my project", "x" * 128):
        assert refused[name] == [] and name_problem(name) is None, name


NAME_RULE = (
    "that MLflow and W&B accept (1 to 128 characters, none of / \\ # ? % : ' \" nor '..', no "
    "control characters or surrounding spaces): it "
)


@pytest.mark.parametrize(
    ("bad", "expected", "good"),
    [
        (
            "main.project_name='../escape'",
            "main.project_name='../escape': must be a project name "
            + NAME_RULE
            + "has '/', has '..'",
            "main.project_name=genres-v2.1",
        ),
        (
            "main.project_name='a:b'",
            "main.project_name='a:b': must be a project name " + NAME_RULE + "has ':'",
            "main.project_name='genre classification'",
        ),
        (
            "random_forest_pipeline.export_artifact='a/b'",
            "random_forest_pipeline.export_artifact='a/b': must be null or an artifact name "
            + NAME_RULE
            + "has '/'",
            "random_forest_pipeline.export_artifact=model.v2",
        ),
        (
            "main.registered_model_name='bad/name'",
            "main.registered_model_name='bad/name': must be null or a registered model name "
            + NAME_RULE
            + "has '/'",
            "main.registered_model_name=null",
        ),
    ],
)
def test_a_name_mlflow_or_wandb_refuses_is_named(bad: str, expected: str, good: str) -> None:
    found = problems(bad)
    assert found[0] == expected
    # main.registered_model_name is ${main.project_name}: a bad project name is named there too.
    if bad.startswith("main.project_name"):
        assert found[1].startswith("main.registered_model_name=")
    assert len(found) == 1 + bad.startswith("main.project_name"), found
    assert problems(good) == []


@pytest.mark.parametrize(
    ("bad", "expected", "good"),
    [
        (
            "data.stratify=genr",
            "data.stratify='genr': no such column in dataset/genres_mod.parquet "
            "(the closest is 'genre')",
            "data.stratify=mode",
        ),
        (
            "+dataset.columns.loudnes={dtype:float64,role:numerical}",
            "dataset.columns.loudnes='loudnes': no such column in "
            "dataset/genres_mod.parquet (the closest is 'loudness')",
            "+dataset.columns.loudnes={dtype:float64}",  # not a feature: get_data's to check
        ),
        (
            "+dataset.columns.zzz={dtype:int64,role:categorical}",
            "dataset.columns.zzz='zzz': no such column in "
            "dataset/genres_mod.parquet (its columns: danceability, energy, key,",
            "dataset.columns.mode.feature=true",
        ),
    ],
)
def test_a_column_the_data_lacks_is_named_with_the_closest(
    bad: str, expected: str, good: str
) -> None:
    found = problems(bad)
    assert len(found) == 1 and found[0].startswith(expected), found
    assert problems(good) == []


def test_a_text_column_the_data_lacks_is_named(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "no_song_name.parquet"
    pq.write_table(pq.read_table(DATASET).drop_columns(["song_name"]), path)
    found = problems(f"data.file_url={path}", "data.sha256=null")
    # The model joins the text columns itself: each must be in the file.
    assert found == [
        f"dataset.columns.song_name='song_name': no such column in {path} (its columns: "
        "danceability, energy, key, loudness, mode, speechiness, acousticness, instrumentalness, "
        "liveness, valence, tempo, type, duration_ms, time_signature, genre, title)"
    ]
    assert problems(f"data.file_url={DATASET}") == []


def test_a_data_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "songs.parquet"
    path.write_text("title,song_name\n")
    (found,) = problems(f"data.file_url={path}", "data.sha256=null")
    assert found.startswith(f"data.file_url='{path}': not a readable Parquet file (")
    assert found.endswith("): get_data reads Parquet only")
    assert problems(f"data.file_url={DATASET}") == []


def test_the_columns_of_a_url_are_left_to_get_data() -> None:
    url = "data.file_url='https://example.org/genres_mod.parquet?raw=true'"
    assert problems(url, "data.stratify=genr") == []


def test_a_stratify_column_with_missing_values_is_named(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(DATASET)
    genre = table.column("genre").to_pylist()
    genre[:3] = [None] * 3
    path = tmp_path / "gaps.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("genre"), "genre", [genre]), path)
    assert problems(f"data.file_url={path}", "data.sha256=null") == [
        f"data.stratify='genre': column 'genre' of {path} has 3 missing values: a stratified "
        "split needs a value in every row"
    ]
    assert problems(f"data.file_url={path}", "data.sha256=null", "data.stratify=null") == []


def test_a_split_that_may_leave_a_class_no_row_is_named() -> None:
    assert problems("data.test_size=0.00001") == [
        "data.test_size=1e-05: may leave classes 'Pop' (468 rows), 'Emo' (1705 rows), "
        "'Rap' (1870 rows) and 12 more no row in the test split (1 of 42896 rows): each class "
        "of 'genre' needs a row in train, validation and test"
    ]
    assert problems("data.val_size=0.9999") == [
        "data.val_size=0.9999: may leave classes 'Pop' (468 rows), 'Emo' (1705 rows), "
        "'Rap' (1870 rows) and 12 more no row to fit on (3 of 30027 train rows): each class of "
        "'genre' needs a row in train, validation and test"
    ]
    # 429 test rows give every class a few; unstratified, one test row is still a split.
    assert problems("data.test_size=0.01", "data.val_size=0.01") == []
    assert problems("data.test_size=0.00001", "data.stratify=null") == []


def test_split_problems_of_plain_counts() -> None:
    from util_lib.pipeline.config_data import split_problems

    assert [str(p) for p in split_problems(0.5, 0.3, 1)] == [
        "data.test_size=0.5: leaves no row to train on (1 row)"
    ]
    assert [str(p) for p in split_problems(0.5, 0.5, 3)] == [
        "data.val_size=0.5: leaves no row to fit on (1 train row)"
    ]
    each = "each class of 'y' needs a row in train, validation and test"
    # 3 rows of 103: 2 or 3 go to train (72 rows), leaving test 1 or none.
    assert [str(p) for p in split_problems(0.3, 0.3, 103, {"big": 100, "small": 3}, "y")] == [
        "data.test_size=0.3: may leave class 'small' (3 rows) no row in the test split (31 of "
        f"103 rows): {each}",
        "data.val_size=0.3: may leave class 'small' (3 rows) no row in the validation split (22 "
        f"of 72 train rows): {each}",
    ]
    assert split_problems(0.3, 0.5, 60, {"big": 50, "small": 10}, "y") == []


def test_a_split_that_passes_leaves_every_class_a_row_in_scikit_learn() -> None:
    """split_problems sizes the parts as train_test_split does: whatever passes, every class
    gets a row of test, validation and train, whatever the seed (the check may refuse a few
    splits that some seeds would allow: it names what may happen)."""
    import random

    import numpy as np
    from sklearn.model_selection import train_test_split

    from util_lib.pipeline.config_data import split_problems

    draw = random.Random(0)
    passed = 0
    for _ in range(150):
        classes = {f"c{i}": draw.randint(1, 40) for i in range(draw.randint(2, 6))}
        test_size, val_size = draw.choice([0.05, 0.2, 0.3, 0.5, 0.9]), draw.choice([0.1, 0.3, 0.8])
        if split_problems(test_size, val_size, sum(classes.values()), classes, "y"):
            continue
        passed += 1
        y = np.array([c for c, k in classes.items() for _ in range(k)])
        for seed in range(3):
            train, test = train_test_split(y, test_size=test_size, random_state=seed, stratify=y)
            fit, val = train_test_split(
                train, test_size=val_size, random_state=seed, stratify=train
            )
            assert all(set(part) == set(classes) for part in (test, val, fit)), classes
    assert passed > 20  # the check let enough through to say something


def _log_preprocessed_data(folder: Path) -> str:
    """A version of preprocessed_data in the test's store, as preprocess logs it."""
    from util_lib.step.run import start_run

    path = folder / "preprocessed_data.parquet"
    path.write_bytes(b"rows")
    with start_run("preprocess", "preprocess_data") as run:
        return run.log_artifact(path, "preprocessed_data", "preprocessed_data", "rows")


def test_a_reference_that_resolves_nowhere_is_named(tracking: Path) -> None:
    assert problems("data.reference_dataset=no_such:v99") == [
        "data.reference_dataset='no_such:v99': artifact 'no_such' not found: project "
        f"'music_genre_classification' has no artifacts in the store at "
        f"sqlite:///{tracking}/mlflow.db (projects there: none): must name a version the store "
        "holds, or an alias of preprocessed_data (which the pipeline sets)"
    ]
    # The first run: no version has the alias check_data gives the first sample that passes.
    assert problems() == []


def test_a_reference_is_checked_against_the_versions_the_store_holds(tracking: Path) -> None:
    assert _log_preprocessed_data(tracking) == "preprocessed_data:v0"
    for good in ("preprocessed_data:v0", "preprocessed_data:reference", "preprocessed_data"):
        assert problems(f"data.reference_dataset={good}") == [], good
    (found,) = problems("data.reference_dataset=preprocessed_data:v3")
    assert "version 'v3' of artifact 'preprocessed_data' not found" in found
    assert "(versions: v0 [latest, current])" in found
    # check_data gives the alias to the sample's artifact only: another's must exist.
    (found,) = problems("data.reference_dataset=raw_data.parquet:reference")
    assert "artifact 'raw_data.parquet' not found in project 'music_genre_classification'" in found
    (found,) = problems("data.reference_dataset=other/preprocessed_data:reference")
    assert "project 'other' has no artifacts" in found
    # Only a step that runs reads it.
    steps = "main.execute_steps=[segregate,train_random_forest]"
    assert problems("data.reference_dataset=preprocessed_data:v3", steps) == []


def test_a_store_that_does_not_exist_yet_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "new.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert problems() == []
    assert problems("data.reference_dataset=preprocessed_data:v0") == [
        "data.reference_dataset='preprocessed_data:v0': no artifact yet: the store at "
        f"sqlite:///{database} does not exist: must name a version the store holds, or an "
        "alias of preprocessed_data (which the pipeline sets)"
    ]
    assert not database.exists()


@pytest.mark.parametrize(
    ("log_file", "expected"),
    [
        ("/proc/nope/x.log", "cannot create a folder in /proc: No such file or directory"),
        ("{tmp}/a_file/x.log", "{tmp}/a_file is a file, not a folder"),
        ("{tmp}/a_folder", "{tmp}/a_folder is a folder"),
    ],
)
def test_a_log_file_the_pipeline_cannot_write_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_file: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ML_PIPELINE_LOG", raising=False)
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_folder").mkdir()
    log_file = log_file.format(tmp=tmp_path)
    assert problems(f"main.log_file={log_file}") == [
        f"main.log_file='{log_file}': must be a file the pipeline can write: "
        + expected.format(tmp=tmp_path)
    ]
    # A folder that does not exist yet is fine (the pipeline makes it); none is left behind.
    assert problems("main.log_file=logs/today/pipeline.log") == []
    assert problems("main.log_file=a_file") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]


def test_the_log_file_the_environment_names_is_the_one_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ML_PIPELINE_LOG", "/proc/nope/x.log")
    assert problems() == [
        "main.log_file='ml_pipeline.log': must be a file the pipeline can write: cannot create "
        "a folder in /proc: No such file or directory ($ML_PIPELINE_LOG=/proc/nope/x.log is used)"
    ]


def test_a_sweep_reads_the_data_once_for_all_its_jobs() -> None:
    from util_lib.pipeline import config_data as config_schema

    config_schema._read_layout.cache_clear()
    config_schema._read_counts.cache_clear()
    message = sweep_error("data.test_size=0.00001,0.1,0.2,0.3", "data.val_size=0.1,0.2,0.3")
    assert message.startswith("invalid configuration in 3 of 12 jobs of the sweep;")
    assert "data.test_size=1e-05: may leave classes 'Pop'" in message
    assert message.endswith("(jobs 0, 1, 2)")
    assert config_schema._read_layout.cache_info().misses == 1
    assert config_schema._read_counts.cache_info().misses == 1


def test_every_problem_that_would_fail_later_is_listed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ML_PIPELINE_LOG", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = composed(
        "main.registered_model_name=bad/name",
        "random_forest_pipeline.export_artifact=a/b",
        "+dataset.columns.loudnes={dtype:float64,role:numerical}",
        "data.test_size=0.00001",
        "data.reference_dataset=no_such:v99",
        "main.log_file=/proc/nope/x.log",
    )
    with pytest.raises(ConfigError) as error:
        check_config(config)
    message = str(error.value)
    assert message.startswith("invalid configuration (6 problems):")
    for key in (
        "main.registered_model_name='bad/name'",
        "random_forest_pipeline.export_artifact='a/b'",
        "dataset.columns.loudnes='loudnes'",
        "data.test_size=1e-05",
        "data.reference_dataset='no_such:v99'",
        "main.log_file='/proc/nope/x.log'",
    ):
        assert f"\n  {key}: " in message
