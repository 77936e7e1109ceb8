"""The embedded artifact store: W&B semantics on a real MLflow tracking backend (SQLite)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from util_lib.store import ArtifactNotFoundError, MlflowArtifactStore, parse_spec
from util_lib.tracking import start_run


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
        path = run.use_artifact(spec)
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
    with pytest.raises(ArtifactNotFoundError, match=r"version 'v7'.*v0 \[latest\]"):
        store.resolve("present:v7")
    with pytest.raises(ArtifactNotFoundError, match=r"alias 'prod'.*v0 \[latest\]"):
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
        from util_lib.tracking import start_run
        go, content = Path(sys.argv[1]), Path(sys.argv[2])
        content.write_text(sys.argv[2])
        with start_run("writer", "test") as run:
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
