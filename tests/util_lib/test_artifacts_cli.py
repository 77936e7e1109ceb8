"""`python -m util_lib.artifacts`: list, get and alias against a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import run_main
from util_lib.artifacts.cli import main as artifacts_main
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m util_lib.artifacts ARGS`, in this process (tests/cli.py)."""
    return run_main(artifacts_main, *args)


def test_the_command_runs_as_a_process(tracking: Path) -> None:
    """The one test of the entry point itself, `python -m util_lib.artifacts`."""
    (tracking / "f.txt").write_text("one")
    with start_run("producer", "test") as run:
        run.log_artifact(tracking / "f.txt", "cli_thing", "raw_data", "d")
    listed = subprocess.run(
        [sys.executable, "-m", "util_lib.artifacts", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "cli_thing:v0" in listed.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "util_lib.artifacts", "get", "unknown:v0", "--root", "x"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert missing.returncode == 1 and "'unknown' not found" in missing.stderr


def test_list_get_alias(tracking: Path) -> None:
    for text in ("one", "two"):
        (tracking / "f.txt").write_text(text)
        with start_run("producer", "test") as run:
            run.log_artifact(tracking / "f.txt", "cli_thing", "raw_data", "d")
    with start_run("consumer", "test") as run:
        run.use_artifact("cli_thing:v0")

    listed = _cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "cli_thing:v0" in listed.stdout and "cli_thing:v1" in listed.stdout
    assert "producer (" in listed.stdout and "consumer (" in listed.stdout

    got = _cli("get", "cli_thing:v0", "--root", str(tracking / "out"))
    assert got.returncode == 0, got.stderr
    assert (tracking / "out" / "f.txt").read_text() == "one"

    aliased = _cli("alias", "cli_thing:v0", "prod")
    assert aliased.returncode == 0, aliased.stderr
    assert "prod -> cli_thing:v0" in aliased.stdout
    v0_line = next(line for line in _cli("list").stdout.splitlines() if "cli_thing:v0" in line)
    assert "prod" in v0_line


def test_unknown_names_exit_non_zero_with_what_exists(tracking: Path) -> None:
    (tracking / "f.txt").write_text("x")
    with start_run("producer", "test") as run:
        run.log_artifact(tracking / "f.txt", "known", "raw_data", "d")
    missing = _cli("get", "unknown:v0", "--root", str(tracking / "out"))
    assert missing.returncode == 1
    assert "'unknown' not found" in missing.stderr and "known" in missing.stderr
    bad_version = _cli("alias", "known:v4", "prod")
    assert bad_version.returncode == 1
    assert "v4" in bad_version.stderr and "v0 [latest, current]" in bad_version.stderr


def test_project_option_lists_gets_and_aliases_in_that_project(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for project, text in (("dev", "dev data"), ("prod", "prod data")):
        monkeypatch.setenv("WANDB_PROJECT", project)
        (tracking / "f.txt").write_text(text)
        with start_run("producer", "test") as run:
            run.log_artifact(tracking / "f.txt", f"{project}_only", "raw_data", "d")
            run.log_artifact(tracking / "f.txt", "both", "raw_data", "d")
    monkeypatch.setenv("WANDB_PROJECT", "dev")

    listed = _cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "project: dev" in listed.stdout.splitlines()[0]
    assert "dev_only:v0" in listed.stdout and "prod_only" not in listed.stdout
    for args in (("list", "--project", "prod"), ("--project", "prod", "list")):
        listed = _cli(*args)
        assert listed.returncode == 0, listed.stderr
        assert "project: prod" in listed.stdout.splitlines()[0]
        assert "prod_only:v0" in listed.stdout and "dev_only" not in listed.stdout

    got = _cli("get", "both:v0", "--root", str(tracking / "p"), "--project", "prod")
    assert got.returncode == 0, got.stderr
    assert (tracking / "p" / "f.txt").read_text() == "prod data"
    got = _cli("get", "prod/both:latest", "--root", str(tracking / "q"))
    assert got.returncode == 0, got.stderr
    assert (tracking / "q" / "f.txt").read_text() == "prod data"

    aliased = _cli("alias", "both:v0", "reference", "--project", "prod")
    assert aliased.returncode == 0, aliased.stderr
    assert "reference -> prod/both:v0" in aliased.stdout
    both_in_dev = next(line for line in _cli("list").stdout.splitlines() if "both:v0" in line)
    assert "reference" not in both_in_dev

    missing = _cli("list", "dev_only", "--project", "prod")
    assert missing.returncode == 1
    assert "project 'prod'" in missing.stderr and "prod_only" in missing.stderr
    unknown = _cli("list", "--project", "nowhere")
    assert unknown.returncode == 0, unknown.stderr
    assert "no artifacts (other projects: dev, prod)" in unknown.stdout
    bad = _cli("list", "--project", "a/b")
    assert bad.returncode == 2 and "not a valid project name" in bad.stderr


def _model_like(tracking: Path) -> Path:
    """A folder artifact shaped like an exported model, logged as model_export:v0; returns
    its stored copy."""
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    folder = tracking / "export"
    (folder / "code").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "code" / "pyfunc_model.py").write_text("LOADER = 1\n")
    with start_run("train_random_forest", "train") as run:
        run.log_artifact(folder, "model_export", "model_export", "a model")
    source = MlflowArtifactStore().resolve("model_export:v0").source
    return Path(source.removeprefix("file://"))


def test_get_never_touches_files_it_did_not_write(tracking: Path) -> None:
    _model_like(tracking)
    root = tracking / "mine"
    (root / "code").mkdir(parents=True)
    (root / "code" / "mine.py").write_text("my work\n")
    (root / "keep.txt").write_text("keep\n")
    refused = _cli("get", "model_export:v0", "--root", str(root))
    assert refused.returncode == 1
    assert "is not an empty folder" in refused.stderr and str(root) in refused.stderr
    assert (root / "code" / "mine.py").read_text() == "my work\n"
    assert sorted(p.name for p in root.rglob("*")) == ["code", "keep.txt", "mine.py"]
    # A new or empty folder is where it writes, and its check looks at the artifact's files.
    empty = tracking / "empty"
    empty.mkdir()
    got = _cli("get", "model_export:v0", "--root", str(empty))
    assert got.returncode == 0, got.stderr
    assert sorted(p.relative_to(empty).as_posix() for p in empty.rglob("*") if p.is_file()) == [
        "MLmodel",
        "code/pyfunc_model.py",
    ]


def test_a_mismatch_is_named_and_leaves_no_copy(tracking: Path) -> None:
    stored = _model_like(tracking)
    (stored / "code" / "pyfunc_model.py").write_text("LOADER = 1\nimport os\n")
    (stored / "extra.py").write_text("x")
    root = tracking / "out"
    refused = _cli("get", "model_export:v0", "--root", str(root))
    assert refused.returncode == 1
    assert "changed: code/pyfunc_model.py" in refused.stderr
    assert "added: extra.py" in refused.stderr
    assert not root.exists()  # the copy it made is gone with the folder it created
    verified = _cli("verify", "model_export:v0")
    assert verified.returncode == 1 and "changed: code/pyfunc_model.py" in verified.stderr
    (stored / "code" / "pyfunc_model.py").write_text("LOADER = 1\n")
    (stored / "extra.py").unlink()
    (stored / "MLmodel").unlink()
    verified = _cli("verify", "model_export:v0")
    assert verified.returncode == 1 and "missing: MLmodel" in verified.stderr


def test_verify_passes_on_untouched_files_and_ignores_mlflows_own_meta_file(
    tracking: Path,
) -> None:
    stored = _model_like(tracking)
    # What `mlflow models serve -m models:/...` writes into a local model it uses in place.
    (stored / "registered_model_meta").write_text("model_name: m\nmodel_version: '1'\n")
    verified = _cli("verify", "model_export:v0")
    assert verified.returncode == 0, verified.stderr
    assert "model_export:v0: all 2 files match their sha256 digests" in verified.stdout


def test_verify_all_lists_each_damaged_version_and_exits_non_zero(tracking: Path) -> None:
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    stored = _model_like(tracking)  # model_export:v0, a folder
    for text in ("one", "two"):
        (tracking / "f.txt").write_text(text)
        with start_run("producer", "test") as run:
            run.log_artifact(tracking / "f.txt", "rows", "raw_data", "d")
    sound = _cli("verify", "--all")
    assert sound.returncode == 0, sound.stderr
    assert sound.stdout.splitlines() == [
        "all 3 versions of 2 artifact(s) match their sha256 digests (project "
        f"music_genre_classification of the store at sqlite:///{tracking / 'mlflow.db'})"
    ]

    rows_v0 = MlflowArtifactStore().resolve("rows:v0").source.removeprefix("file://")
    (Path(rows_v0) / "f.txt").write_text("One")
    (stored / "MLmodel").unlink()
    (stored / "code" / "extra.py").write_text("x")
    damaged = _cli("verify", "--all")
    assert damaged.returncode == 1
    assert "2 of 3 versions damaged" in damaged.stdout
    lines = {line.split()[0]: line for line in damaged.stdout.splitlines() if ":v" in line}
    assert set(lines) == {"rows:v0", "model_export:v0"}
    assert lines["rows:v0"].split(None, 1)[1] == "changed: f.txt"
    assert lines["model_export:v0"].split(None, 1)[1] == "added: code/extra.py; missing: MLmodel"
    last = damaged.stderr.strip().splitlines()[-1]
    assert last == "error: 2 damaged version(s): model_export:v0, rows:v0"
    # The verdict stays on the versions: `list` shows it, and the alias current.
    listed = {line.split()[0]: line for line in _cli("list").stdout.splitlines() if ":v" in line}
    assert "DAMAGED" in listed["rows:v0"] and "DAMAGED" in listed["model_export:v0"]
    assert "DAMAGED" not in listed["rows:v1"]
    assert "latest, current" in listed["rows:v1"]

    elsewhere = _cli("verify", "--all", "--project", "elsewhere")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert "all 0 versions of 0 artifact(s)" in elsewhere.stdout
    neither = _cli("verify")
    assert neither.returncode == 2 and "give one artifact version, or --all" in neither.stderr
    both = _cli("verify", "rows:v1", "--all")
    assert both.returncode == 2 and "give one artifact version, or --all" in both.stderr
