"""util_lib.artifacts.digests: content digests of code and parameters, and the tags a run
records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from util_lib.artifacts.digests import (
    UTIL_LIB_DIR,
    code_digest,
    folder_digest,
    folder_files,
    manifest_digest,
    params_digest,
    running_step_folder,
)
from util_lib.artifacts.files import file_digests
from util_lib.names import CODE_DIGEST_TAG, CODE_DIR_TAG, CONFIG_DIGEST_TAG
from util_lib.step.run import start_run
from util_lib.step.trackers import flatten

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def step(tmp_path: Path) -> Path:
    """A small step folder: an MLproject, a script, a README, a package."""
    folder = tmp_path / "toy"
    (folder / "pkg").mkdir(parents=True)
    (folder / "MLproject").write_text("name: toy\n")
    (folder / "run.py").write_text("print('toy')\n")
    (folder / "README.md").write_text("# toy\n")
    (folder / "pkg" / "mod.py").write_text("X = 1\n")
    return folder


def test_folder_digest_is_the_store_s_manifest_digest_and_depends_on_content_only(
    step: Path, tmp_path: Path
) -> None:
    assert folder_digest(step) == manifest_digest(file_digests(step))
    copy = shutil.copytree(step, tmp_path / "elsewhere" / "toy_copy")
    assert folder_digest(copy) == folder_digest(step)
    (copy / "pkg" / "mod.py").write_text("X = 2\n")
    assert folder_digest(copy) != folder_digest(step)


def test_caches_hidden_files_and_run_outputs_do_not_count(step: Path) -> None:
    before = folder_digest(step)
    (step / "__pycache__").mkdir()
    (step / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"\x00compiled")
    (step / "pkg" / "mod.pyc").write_bytes(b"\x00")
    (step / ".pytest_cache").mkdir()
    (step / ".pytest_cache" / "v").write_text("x")
    (step / "wandb").mkdir()
    (step / "wandb" / "run.log").write_text("x")
    (step / "mlflow.db").write_text("x")
    assert folder_digest(step) == before
    assert sorted(folder_files(step)) == ["MLproject", "README.md", "pkg/mod.py", "run.py"]


def test_code_digest_counts_code_and_util_lib_not_docs(step: Path, tmp_path: Path) -> None:
    library = tmp_path / "lib" / "util_lib"
    library.mkdir(parents=True)
    (library / "a.py").write_text("A = 1\n")
    before = code_digest([step], packages=[library])
    assert code_digest([step], packages=[library]) == before  # deterministic
    (step / "README.md").write_text("# toy, explained at length\n")
    assert code_digest([step], packages=[library]) == before
    (step / "run.py").write_text("print('changed')\n")
    after_step = code_digest([step], packages=[library])
    assert after_step != before
    (library / "a.py").write_text("A = 2\n")
    assert code_digest([step], packages=[library]) != after_step
    # None (no step folder) leaves the shared code alone; the default package is util_lib.
    assert code_digest([None], packages=[library]) == code_digest([], packages=[library])
    library_files = folder_files(UTIL_LIB_DIR, skip_suffixes=(".pyc", ".md"))
    assert "step/run.py" in library_files and "README.md" not in library_files
    expected = manifest_digest({f"util_lib/{k}": v for k, v in library_files.items()})
    assert code_digest([None]) == expected


def test_code_digest_refuses_two_folders_of_one_name(step: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "toy"
    other.mkdir(parents=True)
    with pytest.raises(ValueError, match="two folders named 'toy'"):
        code_digest([step, other], packages=[])


def test_folder_files_names_what_is_not_a_folder(step: Path) -> None:
    with pytest.raises(NotADirectoryError, match="run.py"):
        folder_files(step / "run.py")


def test_params_digest_ignores_key_order_and_sees_every_value() -> None:
    base = params_digest({"a": 1, "b": "x", "c": None})
    assert params_digest({"c": None, "b": "x", "a": 1}) == base
    assert params_digest({"a": 2, "b": "x", "c": None}) != base
    assert params_digest({"a": 1, "b": "x"}) != base
    assert params_digest({"p": Path("/tmp/f")}) == params_digest({"p": "/tmp/f"})


def test_running_step_folder(step: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(step)  # as `mlflow run` starts a step (pytest's script is elsewhere)
    assert running_step_folder() == step.resolve()
    monkeypatch.chdir(step / "pkg")
    assert running_step_folder() is None
    monkeypatch.chdir(REPO)  # the pipeline's own MLproject is no step
    assert running_step_folder() is None
    monkeypatch.chdir(REPO / "preprocess")
    assert running_step_folder() == REPO / "preprocess"


def test_a_run_records_its_code_and_config_digests(
    tracking: Path, step: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(step)
    config = {"input_artifact": "raw:v0", "nested": {"depth": 3}}
    with start_run("toy", "test", config) as run:
        started = MlflowClient().get_run(run.run_id).data.tags
        run.log_params({"later": 5})
    tags = MlflowClient().get_run(run.run_id).data.tags
    assert started[CODE_DIGEST_TAG] == code_digest([step])
    assert started[CODE_DIR_TAG] == "toy"
    assert started[CONFIG_DIGEST_TAG] == params_digest(flatten(config))
    # Parameters logged later count too: the digest covers every parameter of the run.
    assert tags[CONFIG_DIGEST_TAG] == params_digest({**flatten(config), "later": 5})


def test_a_run_outside_a_step_folder_digests_util_lib_only(tracking: Path) -> None:
    from mlflow import MlflowClient

    with start_run("toy", "test") as run:
        pass
    tags = MlflowClient().get_run(run.run_id).data.tags
    assert tags[CODE_DIGEST_TAG] == code_digest([None]) and tags[CODE_DIR_TAG] == ""
    assert tags[CONFIG_DIGEST_TAG] == params_digest({})
