"""The embedded artifact store: W&B semantics on a real MLflow tracking backend (SQLite)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from util_lib.artifacts.interface import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactVersion,
    mark_current,
    parse_spec,
)
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _log(tmp: Path, name: str, text: str, step: str = "producer") -> str:
    with start_run(step, "test") as run:
        return run.log_artifact(_write(tmp / "file.txt", text), name, "demo", "a demo file")


def test_parse_spec() -> None:
    assert parse_spec("a.parquet") == (None, "a.parquet", "latest")
    assert parse_spec("proj/a:v3") == ("proj", "a", "v3")
    with pytest.raises(ValueError, match="not of the form"):
        parse_spec("a:b:c")


def test_versions_latest_and_dedupe(tracking: Path) -> None:
    assert _log(tracking, "thing", "one") == "thing:v0"
    assert _log(tracking, "thing", "two") == "thing:v1"
    # Identical content makes no new version.
    assert _log(tracking, "thing", "one") == "thing:v0"
    store = MlflowArtifactStore()
    versions = store.versions("thing")
    assert [v.spec for v in versions] == ["thing:v0", "thing:v1"]
    assert versions[1].aliases == ["latest"]
    assert store.resolve("thing").spec == "thing:v1"
    assert store.resolve("thing:latest").spec == "thing:v1"
    assert store.download(store.resolve("thing:v0")).read_text() == "one"


def test_version_records_type_metadata_digests_and_lineage(tracking: Path) -> None:
    with start_run("producer", "test") as run:
        spec = run.log_artifact(
            _write(tracking / "f.txt", "data"), "rec", "raw_data", "described", {"rows": 3}
        )
        producer = run.run_id
    with start_run("consumer", "test") as run:
        path = run.use_artifact(spec).path
        consumer = run.run_id
    assert path.read_text() == "data"
    version = MlflowArtifactStore().resolve(spec)
    assert version.type == "raw_data"
    assert version.description == "described"
    assert version.metadata == {"rows": 3}
    assert set(version.files) == {"f.txt"}
    assert len(version.files["f.txt"]) == 64
    assert version.producer_run_id == producer
    assert version.used_by == {consumer: "consumer"}


def test_folder_artifact_and_get_to_root(tracking: Path) -> None:
    folder = tracking / "model"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "MLmodel", "m")
    _write(folder / "sub" / "w.bin", "w")
    with start_run("producer", "test") as run:
        spec = run.log_artifact(folder, "model_export", "model_export", "a model")
    store = MlflowArtifactStore()
    root = store.download(store.resolve(spec), tracking / "fetched")
    assert root == tracking / "fetched"
    assert (root / "MLmodel").read_text() == "m"
    assert (root / "sub" / "w.bin").read_text() == "w"


def test_aliases(tracking: Path) -> None:
    _log(tracking, "al", "one")
    _log(tracking, "al", "two")
    store = MlflowArtifactStore()
    assert store.set_alias_if_unset("al:v0", "reference") is True
    assert store.set_alias_if_unset("al:v1", "reference") is False
    assert store.resolve("al:reference").spec == "al:v0"
    store.set_alias("al:v1", "reference")  # moves it
    assert store.resolve("al:reference").spec == "al:v1"
    with pytest.raises(ValueError, match="reserved"):
        store.set_alias("al:v0", "latest")


def test_not_found_lists_what_exists(tracking: Path) -> None:
    _log(tracking, "present", "one")
    store = MlflowArtifactStore()
    with pytest.raises(ArtifactNotFoundError, match=r"'absent' not found.*present"):
        store.resolve("absent:latest")
    with pytest.raises(ArtifactNotFoundError, match=r"version 'v7'.*v0 \[latest, current\]"):
        store.resolve("present:v7")
    with pytest.raises(ArtifactNotFoundError, match=r"alias 'prod'.*v0 \[latest, current\]"):
        store.resolve("present:prod")


def test_failed_run_leaves_no_version(tracking: Path) -> None:
    _log(tracking, "fragile", "good")
    with pytest.raises(RuntimeError, match="boom"), start_run("failing", "test") as run:
        run.log_artifact(_write(tracking / "f.txt", "half"), "fragile", "demo", "d")
        raise RuntimeError("boom")
    store = MlflowArtifactStore()
    assert [v.spec for v in store.versions("fragile")] == ["fragile:v0"]
    assert store.versions("fragile", include_pending=True)[-1].spec == "fragile:v0"
    assert store.resolve("fragile:latest").spec == "fragile:v0"


def test_pending_version_is_invisible_until_commit(tracking: Path) -> None:
    with start_run("writer", "test") as run:
        spec = run.log_artifact(_write(tracking / "f.txt", "x"), "staged", "demo", "d")
        with pytest.raises(ArtifactNotFoundError):
            MlflowArtifactStore().resolve(spec)
    assert MlflowArtifactStore().resolve(spec).spec == spec


def test_two_concurrent_writers_get_distinct_versions(
    tracking: Path, run_together: Callable[..., list[str]]
) -> None:
    # Both processes open their runs, then log at the same moment.
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from util_lib.step.run import start_run
        go, ready, content = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
        content.write_text(sys.argv[3])
        with start_run("writer", "test") as run:
            ready.touch()
            while not go.exists():
                time.sleep(0.01)
            print(run.log_artifact(content, "shared", "demo", "d"))
        """
    )
    MlflowArtifactStore().names()  # the database exists before the writers race
    lines = run_together(script, [[str(tracking / f"w{i}.txt")] for i in range(2)])
    specs = sorted(lines)
    assert specs == ["shared:v0", "shared:v1"]
    versions = MlflowArtifactStore().versions("shared")
    assert sorted(v.spec for v in versions) == specs
    assert len({v.digest for v in versions}) == 2


# ------------------------------------------------------------------------------- projects
def _log_in(project: str, tmp: Path, name: str, text: str) -> str:
    """Log as a step of W&B project ``project`` does (the pipeline sets WANDB_PROJECT)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_PROJECT", project)
        return _log(tmp, name, text)


def test_two_projects_neither_see_nor_move_each_others_versions(tracking: Path) -> None:
    assert _log_in("dev", tracking, "shared", "a") == "shared:v0"
    assert _log_in("dev", tracking, "shared", "b") == "shared:v1"
    # The same name in another project starts at v0, and the same content is not deduplicated
    # against the other project's version.
    assert _log_in("prod", tracking, "shared", "a") == "shared:v0"
    dev, prod = MlflowArtifactStore(project="dev"), MlflowArtifactStore(project="prod")
    assert [v.spec for v in dev.versions("shared")] == ["shared:v0", "shared:v1"]
    assert [v.spec for v in prod.versions("shared")] == ["shared:v0"]
    assert dev.resolve("shared:latest").digest != prod.resolve("shared:latest").digest
    assert prod.resolve("shared:v0").project == "prod"
    assert prod.download(prod.resolve("shared:latest")).read_text() == "a"

    assert dev.set_alias_if_unset("shared:v0", "reference") is True
    # prod has no `reference` yet: dev's does not count.
    assert prod.set_alias_if_unset("shared:v0", "reference") is True
    dev.set_alias("shared:v1", "prod")
    with pytest.raises(ArtifactNotFoundError, match=r"alias 'prod'.*project 'prod'"):
        prod.resolve("shared:prod")
    prod.set_alias("shared:v0", "prod")
    assert dev.resolve("shared:prod").spec == "shared:v1"  # not moved by prod's alias
    assert dev.resolve("shared:reference").spec == "shared:v0"
    assert prod.versions("shared")[0].aliases == ["latest", "current", "prod", "reference"]
    assert dev.names() == prod.names() == ["shared"]
    assert dev.projects() == ["dev", "prod"]


def test_a_spec_naming_a_project_resolves_there_and_records_the_use(tracking: Path) -> None:
    _log_in("dev", tracking, "data", "dev data")
    _log_in("prod_project", tracking, "data", "prod one")
    _log_in("prod_project", tracking, "data", "prod two")
    dev = MlflowArtifactStore(project="dev")
    version = dev.resolve("prod_project/data:latest")
    assert (version.project, version.spec) == ("prod_project", "data:v1")
    assert version.qualified_spec == "prod_project/data:v1"
    assert dev.resolve("data:latest").spec == "data:v0"  # the store's own project is untouched
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_PROJECT", "dev")
        with start_run("consumer", "test") as run:
            path = run.use_artifact("prod_project/data:latest").path
            run.use_artifact("data:latest")
    assert path.read_text() == "prod two"
    # The use is recorded with the project when it is another project's version.
    assert run.used == ["prod_project/data:v1", "data:v0"]
    consumer = MlflowArtifactStore(project="prod_project").resolve("data:v1").used_by
    assert consumer == {run.run_id: "consumer"}


def test_an_unknown_project_or_artifact_names_what_exists(tracking: Path) -> None:
    _log_in("dev", tracking, "only_in_dev", "x")
    _log_in("prod", tracking, "only_in_prod", "y")
    dev = MlflowArtifactStore(project="dev")
    with pytest.raises(
        ArtifactNotFoundError, match=r"project 'nowhere'.*projects there: dev, prod"
    ):
        dev.resolve("nowhere/only_in_dev:latest")
    # The listing names the project's artifacts, not the other project's.
    with pytest.raises(ArtifactNotFoundError, match=r"project 'dev'.*: only_in_dev\)") as error:
        dev.resolve("only_in_prod:latest")
    assert "only_in_prod" not in str(error.value).split("artifacts of")[1]
    with pytest.raises(ArtifactNotFoundError, match="nowhere"):
        MlflowArtifactStore(project="nowhere").resolve("only_in_dev")


def test_default_project_is_wandb_project_else_config_yaml(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    configured = yaml.safe_load((REPO / "config.yaml").read_text())["main"]["project_name"]
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert MlflowArtifactStore().project == configured
    monkeypatch.setenv("WANDB_PROJECT", "from_env")
    assert MlflowArtifactStore().project == "from_env"
    assert MlflowArtifactStore(project="given").project == "given"
    with pytest.raises(ValueError, match=r"project 'a/b' is not a valid project name"):
        MlflowArtifactStore(project="a/b")


def test_registry_names_the_project_and_the_tags_tell_them_apart(tracking: Path) -> None:
    from mlflow import MlflowClient

    _log_in("a", tracking, "b.c", "x")
    model = MlflowClient().get_registered_model("a.b.c")
    assert (model.tags["util_lib.project"], model.tags["util_lib.name"]) == ("a", "b.c")
    # Project "a.b" and artifact "c" would share the registered model's name: refused, clearly.
    with pytest.raises(ValueError, match=r"'a\.b\.c' holds artifact 'a/b\.c', not a\.b/c"):
        _log_in("a.b", tracking, "c", "y")
    assert MlflowArtifactStore(project="a.b").names() == []
    with pytest.raises(ValueError, match="must be a bare name"):
        _log_in("a", tracking, "other/thing", "z")


def test_an_artifact_s_registry_entry_says_it_is_not_a_model(tracking: Path) -> None:
    from mlflow import MlflowClient

    _log(tracking, "rows", "x")
    client = MlflowClient()
    model = client.get_registered_model("music_genre_classification.rows")
    assert model.description.startswith(
        "Pipeline artifact music_genre_classification/rows (type demo): versioned data of the "
        "embedded artifact store, not a model."
    )
    assert model.tags["util_lib.note"] == "pipeline artifact, not a model"
    assert (model.tags["util_lib.kind"], model.tags["util_lib.type"]) == ("artifact", "demo")
    # A search by the note (the Models page's search box takes it too) finds the artifact.
    note = "tags.`util_lib.note` = 'pipeline artifact, not a model'"
    assert [m.name for m in client.search_registered_models(note)] == [model.name]


def test_an_artifact_registered_before_descriptions_gets_one_when_next_logged(
    tracking: Path,
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    old_tags = {
        "util_lib.kind": "artifact",
        "util_lib.type": "demo",
        "util_lib.project": "music_genre_classification",
        "util_lib.name": "old",
    }
    client.create_registered_model("music_genre_classification.old", tags=old_tags)
    assert _log(tracking, "old", "x") == "old:v0"
    model = client.get_registered_model("music_genre_classification.old")
    assert "not a model" in model.description
    assert model.tags["util_lib.note"] == "pipeline artifact, not a model"


# ------------------------------------------------------------------------------- integrity
def _kept(version: ArtifactVersion) -> Path:
    """The folder where a store on the local disk keeps the files of ``version``."""
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_check_files_reads_the_kept_files_in_place_and_records_damage(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    folder = tracking / "model"
    (folder / "sub").mkdir(parents=True)
    _write(folder / "MLmodel", "m")
    _write(folder / "sub" / "w.bin", "weights")
    with start_run("producer", "test") as run:
        spec = run.log_artifact(folder, "kept", "demo", "a folder")
    store = MlflowArtifactStore()
    version = store.resolve(spec)
    kept = _kept(version)
    # No copy: with no temporary folder to be had, the files are still checked where they are.
    monkeypatch.setattr(tempfile, "tempdir", str(tracking / "no_such_folder"))
    store.check_files(version)
    _flip_byte(kept / "sub" / "w.bin")
    (kept / "MLmodel").unlink()
    _write(kept / "extra.txt", "x")
    with pytest.raises(ArtifactIntegrityError, match=r"kept:v0.*changed: sub/w\.bin") as error:
        store.check_files(version)
    assert error.value.problems == {
        "changed": ["sub/w.bin"],
        "added": ["extra.txt"],
        "missing": ["MLmodel"],
    }
    recorded = MlflowArtifactStore().resolve(spec)  # another process's view
    assert recorded.damaged == "changed: sub/w.bin; added: extra.txt; missing: MLmodel"
    # Put back as they were, the files are sound again and the record goes.
    _flip_byte(kept / "sub" / "w.bin")
    _write(kept / "MLmodel", "m")
    (kept / "extra.txt").unlink()
    store.check_files(recorded)
    assert MlflowArtifactStore().resolve(spec).damaged == ""


def test_check_files_of_a_version_whose_folder_is_gone_names_every_file(tracking: Path) -> None:
    import shutil

    spec = _log(tracking, "gone", "rows")
    store = MlflowArtifactStore()
    version = store.resolve(spec)
    shutil.rmtree(_kept(version))
    with pytest.raises(ArtifactIntegrityError, match="missing: file.txt"):
        store.check_files(version)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_identical_content_is_never_handed_a_damaged_version(tracking: Path, damage: str) -> None:
    assert _log(tracking, "data", "rows") == "data:v0"
    store = MlflowArtifactStore()
    kept = _kept(store.resolve("data:v0")) / "file.txt"
    _flip_byte(kept) if damage == "changed" else kept.unlink()
    # The same content again: a new version, not the damaged one, which is recorded as such.
    assert _log(tracking, "data", "rows") == "data:v1"
    damaged, sound = store.versions("data")
    assert damaged.damaged == f"{damage}: file.txt"
    assert (sound.digest, sound.damaged) == (damaged.digest, "")
    assert store.download(sound).read_text() == "rows"
    with pytest.raises(ArtifactIntegrityError):
        store.download(damaged)
    # And again: the sound version, checked, is handed back; the damaged one never.
    assert _log(tracking, "data", "rows") == "data:v1"
    assert [v.spec for v in store.versions("data")] == ["data:v0", "data:v1"]


# ------------------------------------------------------------------------------- current
def test_current_is_what_the_last_run_logged_latest_stays_the_newest(tracking: Path) -> None:
    _log(tracking, "thing", "one")
    _log(tracking, "thing", "two")
    store = MlflowArtifactStore()
    assert store.resolve("thing:current").spec == "thing:v1"
    assert _log(tracking, "thing", "one") == "thing:v0"  # identical content: v0 is logged again
    assert store.resolve("thing:current").spec == "thing:v0"
    assert store.resolve("thing:latest").spec == "thing:v1"
    assert store.versions("thing")[0].aliases == ["current"]
    # A failed run moves nothing, whether it logged new content or known content.
    for text in ("three", "two"):
        with pytest.raises(RuntimeError, match="boom"), start_run("failing", "test") as run:
            run.log_artifact(_write(tracking / "f.txt", text), "thing", "demo", "d")
            raise RuntimeError("boom")
    assert store.resolve("thing:current").spec == "thing:v0"


def test_current_reads_latest_while_no_version_has_it(tracking: Path) -> None:
    from mlflow import MlflowClient

    _log(tracking, "thing", "one")
    _log(tracking, "thing", "two")
    store = MlflowArtifactStore()
    # A store from before the rule: no version has the alias.
    MlflowClient().delete_registered_model_alias(store.resolve("thing:v0").registry_name, "current")
    assert all("current" not in v.aliases for v in store.versions("thing"))
    assert store.resolve("thing:current").spec == "thing:v1"
    with pytest.raises(ArtifactNotFoundError, match="'absent' not found"):
        store.resolve("absent:current")
    # The pipeline's marking (after each step) sets it, and then it is what it names.
    assert mark_current(store, ["thing:v0"]) == ["thing:v0"]
    assert store.resolve("thing:current").spec == "thing:v0"
    assert store.resolve("thing:latest").spec == "thing:v1"
    assert mark_current(store, ["thing:current", "thing:v0"]) == []  # already there
    assert mark_current(store, ["absent:v0"]) == []  # warned about, not raised
