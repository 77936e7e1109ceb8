"""The step cache's keys: each invalidation rule (code, parameter, input content, environment,
check_data's reference) changes the key, and only a finished run with outputs still there is
reused. Real SQLite store; the steps' real folders (copied where a test edits them).

The rules that a run's record of what it ran on enforces (util_lib/step/provenance.py: the source
files it loaded, its Python, its distributions) are tested in test_step_cache_record.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import CACHE_TAG
from util_lib.pipeline.cache import StepCache, code_digest
from util_lib.pipeline.graph import get_step
from util_lib.pipeline.setup import step_parameters
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config():
    # Composed: config.yaml's data.* default to the dataset group's values (${dataset.*}).
    return _composed()


@pytest.fixture
def cache(tracking: Path, config) -> StepCache:
    from mlflow import MlflowClient

    from util_lib.step.trackers import get_or_create_experiment

    client = MlflowClient()
    experiment = get_or_create_experiment(config.main.project_name)
    return StepCache(client, experiment, MlflowArtifactStore(), config)


def _log(path: Path, name: str, content: str) -> str:
    path.write_text(content)
    with start_run("producer", "test") as run:
        return run.log_artifact(path, name, "data", "d")


def _key(cache: StepCache, step: str, config, tmp: Path, written=None, **over) -> str | None:
    params = step_parameters(step, config, written or {}, tmp)
    params.update(over)
    source = over.pop("source", None) or (str(REPO / step), None)
    return cache.key(get_step(step), params, over.get("env", "local"), source)


def _lookup(cache: StepCache, step, key: str):
    """``cache.lookup`` for ``step`` of this repository, run with ``--env-manager local``."""
    return cache.lookup(step, key, "local", (str(REPO / step.name), None))


def test_the_same_step_twice_has_the_same_key(cache, config, tracking: Path) -> None:
    _log(tracking / "d.parquet", "preprocessed_data", "rows")
    first = _key(cache, "segregate", config, tracking)
    assert first is not None and first == _key(cache, "segregate", config, tracking)


def test_a_parameter_changes_the_key(cache, config, tracking: Path) -> None:
    _log(tracking / "d.parquet", "preprocessed_data", "rows")
    before = _key(cache, "segregate", config, tracking)
    config.data.test_size = 0.25
    assert _key(cache, "segregate", config, tracking) != before


def test_new_input_content_changes_the_key_identical_content_does_not(
    cache, config, tracking: Path
) -> None:
    first = _log(tracking / "d.parquet", "preprocessed_data", "rows")
    before = _key(cache, "segregate", config, tracking, written={"preprocessed_data": first})
    # An edited preprocess that writes the same bytes: the store keeps the version, same key.
    again = _log(tracking / "d.parquet", "preprocessed_data", "rows")
    assert again == first
    assert _key(cache, "segregate", config, tracking, written={"preprocessed_data": again}) == (
        before
    )
    changed = _log(tracking / "d.parquet", "preprocessed_data", "other rows")
    assert _key(cache, "segregate", config, tracking, written={"preprocessed_data": changed}) != (
        before
    )
    # Read as :latest (segregate run alone), the exact content counts, not the name.
    assert _key(cache, "segregate", config, tracking) != before


def test_an_edit_of_the_step_folder_changes_the_key_its_readme_does_not(tmp_path: Path) -> None:
    folder = tmp_path / "segregate"
    shutil.copytree(REPO / "segregate", folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(folder)
    (folder / "split.py").write_text((folder / "split.py").read_text() + "\n# edited\n")
    edited = code_digest(folder)
    assert edited != before
    # Its README is not code.
    (folder / "README.md").write_text("other words")
    assert code_digest(folder) == edited


def test_the_environment_changes_the_key(cache, config, tracking: Path) -> None:
    _log(tracking / "d.parquet", "preprocessed_data", "rows")
    local = _key(cache, "segregate", config, tracking)
    assert _key(cache, "segregate", config, tracking, env="uv") != local
    folder = tracking / "segregate"
    shutil.copytree(REPO / "segregate", folder, ignore=shutil.ignore_patterns("__pycache__"))
    pinned = _key(cache, "segregate", config, tracking, source=(str(folder), None))
    conda = folder / "conda.yml"
    conda.write_text(conda.read_text().replace("pandas==3.1.1", "pandas==3.0.0"))
    assert _key(cache, "segregate", config, tracking, source=(str(folder), None)) != pinned


def test_check_datas_key_follows_its_reference(cache, config, tracking: Path) -> None:
    first = _log(tracking / "d.parquet", "preprocessed_data", "rows")
    second = _log(tracking / "d.parquet", "preprocessed_data", "more rows")
    written = {"preprocessed_data": second}
    unset = _key(cache, "check_data", config, tracking, written=written)
    store = MlflowArtifactStore()
    store.set_alias(first, "reference")
    on_first = _key(cache, "check_data", config, tracking, written=written)
    store.set_alias(second, "reference")
    on_second = _key(cache, "check_data", config, tracking, written=written)
    assert len({unset, on_first, on_second}) == 3


def test_a_url_without_a_digest_or_an_unversioned_repository_is_never_cached(
    cache, config, tracking: Path
) -> None:
    config.data.file_url = "https://example.com/songs.parquet"
    assert _key(cache, "get_data", config, tracking) is not None  # pinned by data.sha256
    config.data.sha256 = None
    assert _key(cache, "get_data", config, tracking) is None
    remote = ("https://git.example.com/ml/p.git#segregate", None)
    _log(tracking / "d.parquet", "preprocessed_data", "rows")
    assert _key(cache, "segregate", config, tracking, source=remote) is None


def test_only_a_finished_run_whose_outputs_remain_is_reused(
    cache, config, tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", config.main.project_name)  # as the steps run
    client = MlflowClient()
    step = get_step("segregate")
    with start_run("segregate", "split") as run:
        (tracking / "t.parquet").write_text("train")
        run.log_artifact(tracking / "t.parquet", "data_train", "data", "d")
    cache.remember(run.run_id, "k1")
    assert _lookup(cache, step, "k1").run.info.run_id == run.run_id
    assert _lookup(cache, step, "k2") is None
    assert _lookup(cache, get_step("preprocess"), "k1") is None  # another step's key space
    # A failed run never carries a key into reuse.
    failed = client.create_run(cache.experiment_id, tags={"util_lib.step": "segregate"})
    client.set_tag(failed.info.run_id, CACHE_TAG, "k3")
    client.set_terminated(failed.info.run_id, "FAILED")
    assert _lookup(cache, step, "k3") is None
    # Outputs deleted since: the next pipeline (a new cache: one pipeline's view of the store
    # is read once) cannot reuse the run.
    name = MlflowArtifactStore().resolve("data_train:v0").registry_name
    client.delete_registered_model(name)
    fresh = StepCache(client, cache.experiment_id, MlflowArtifactStore(), cache.config)
    assert _lookup(fresh, step, "k1") is None


def test_another_data_location_changes_the_key(cache, config, tracking: Path) -> None:
    pinned = _key(cache, "get_data", config, tracking)
    config.data.file_url = "https://example.com/genres_mod.parquet"  # the same sha256
    assert _key(cache, "get_data", config, tracking) not in (None, pinned)


def _kept(version) -> Path:
    """The folder where the store (on the local disk) keeps the files of ``version``."""
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source))


def _split(tracking: Path) -> str:
    """A run of segregate that writes data_train and data_test; its run id."""
    with start_run("segregate", "split") as run:
        for name, rows in (("data_train", "train rows"), ("data_test", "test rows")):
            (tracking / f"{name}.parquet").write_text(rows)
            run.log_artifact(tracking / f"{name}.parquet", name, "segregated_data", "d")
    return run.run_id


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_run_whose_output_is_damaged_is_not_reused_and_its_rerun_is(
    cache, config, tracking: Path, monkeypatch: pytest.MonkeyPatch, caplog, damage: str
) -> None:
    import logging

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", config.main.project_name)  # as the steps run
    step = get_step("segregate")
    first = _split(tracking)
    cache.remember(first, "k1")
    assert _lookup(cache, step, "k1").run.info.run_id == first
    kept = _kept(MlflowArtifactStore().resolve("data_test:v0")) / "data_test.parquet"
    if damage == "changed":
        kept.write_bytes(bytes([kept.read_bytes()[0] ^ 1]) + kept.read_bytes()[1:])
    else:
        kept.unlink()
    fresh = StepCache(cache.client, cache.experiment_id, MlflowArtifactStore(), cache.config)
    with caplog.at_level(logging.WARNING, logger="util_lib.pipeline.cache"):
        assert _lookup(fresh, step, "k1") is None
    said = caplog.text
    assert f"run {first} not reused" in said
    assert "data_test:v0" in said and f"{damage}: data_test.parquet" in said
    assert MlflowArtifactStore().resolve("data_test:v0").damaged == f"{damage}: data_test.parquet"
    # The step runs again: the same content makes a new, sound data_test, and that run is reused.
    again = _split(tracking)
    assert [v.spec for v in MlflowArtifactStore().versions("data_test")] == [
        "data_test:v0",
        "data_test:v1",
    ]
    assert [v.spec for v in MlflowArtifactStore().versions("data_train")] == ["data_train:v0"]
    cache.remember(again, "k1")
    assert _lookup(fresh, step, "k1").run.info.run_id == again


def _composed(*overrides: str):
    """config.yaml composed as main.py's Hydra does (the model group chosen)."""
    from hydra import compose, initialize_config_dir

    import util_lib.pipeline.config  # noqa: F401 - conf/ on the search path

    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_another_model_family_or_argument_changes_the_train_key(cache, tracking: Path) -> None:
    """`model=...` switches a config group, not a key of random_forest_pipeline: the train
    step's key reads the model's own file (a false CACHED hit would export the old model)."""
    _log(tracking / "t.parquet", "data_train", "rows")
    keys = {}
    for overrides in [(), ("model=random_forest",), ("model=hist_gradient_boosting",),
                      ("model=logistic_regression",), ("model.max_depth=20",)]:  # fmt: skip
        keys[overrides] = _key(cache, "train_random_forest", _composed(*overrides), tracking)
    assert None not in keys.values()
    assert keys[()] == keys[("model=random_forest",)]  # the default family, the same key
    assert len(set(keys.values())) == 4
