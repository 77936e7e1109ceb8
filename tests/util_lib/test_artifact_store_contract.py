"""One contract for both artifact stores (:class:`util_lib.artifacts.interface.ArtifactStore`).

Each test runs against the embedded store on a real SQLite tracking store, and against the W&B
store on a real W&B run in W&B's offline mode. Offline, W&B takes a file into the run but
numbers no version (``Artifact.wait``), refuses ``use_artifact`` and has no public API without
a key: a test that reaches one of those refusals is skipped with W&B's own words
(:class:`util_lib.artifacts.wandb_reader.WandbUnavailableError`), so for W&B this suite checks the
interface, the input checks made before W&B is asked, and what a run with nothing logged
commits and discards. The rest of the W&B store needs W&B online.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from util_lib.artifacts.backends import open_store
from util_lib.artifacts.digests import manifest_digest
from util_lib.artifacts.files import file_digests
from util_lib.artifacts.interface import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStore,
    ArtifactVersion,
    UsedArtifact,
)
from util_lib.artifacts.wandb_reader import WandbUnavailableError
from util_lib.names import CHECK_RUN_TAG, CHECK_TAG, DIGEST_TAG

PROJECT = "contract"
KINDS = ["mlflow", "wandb"]
# The embedded store's own guarantee: W&B numbers a version only when it commits it, so the W&B
# store shows a version from upload on (its discard deletes it).
HIDDEN_UNTIL_COMMIT = [
    "mlflow",
    pytest.param(
        "wandb",
        marks=pytest.mark.skip(
            reason="W&B commits a version when it is uploaded: visible before the run commits"
        ),
    ),
]


@dataclass
class Stores:
    """The stores of one kind on one backend, and what the tests need around them."""

    kind: str
    open: Callable[[str], ArtifactStore]  # a store working in the given project
    run_id: str  # the MLflow run that produces the versions
    tamper: Callable[[ArtifactVersion], None]  # change one file the store keeps of a version


def _producer_run() -> str:
    """An MLflow run of the test's store, the producer of every version logged."""
    from mlflow import MlflowClient

    from util_lib.step.trackers import get_or_create_experiment

    return MlflowClient().create_run(get_or_create_experiment("contract")).info.run_id


def _embedded() -> Stores:
    import mlflow.artifacts

    run_id = _producer_run()

    def tamper(version: ArtifactVersion) -> None:
        kept = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source))
        first = sorted(p for p in kept.rglob("*") if p.is_file())[0]
        first.write_text("changed after logging")

    return Stores("mlflow", lambda project: open_store("mlflow", project), run_id, tamper)


@pytest.fixture(params=KINDS)
def stores(
    request: pytest.FixtureRequest, tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stores]:
    if request.param == "mlflow":
        yield _embedded()
        return
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    runs: list[Any] = []

    def open_wandb(project: str) -> ArtifactStore:
        run = wandb.init(
            project=project,
            mode="offline",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        runs.append(run)
        return open_store("wandb", wandb_run=run)

    def tamper(version: ArtifactVersion) -> None:
        pytest.skip("this suite has no way to change a file inside W&B's storage")

    yield Stores("wandb", open_wandb, _producer_run(), tamper)
    for run in runs:
        run.finish()


def skip_what_wandb_refuses(test: Callable[..., None]) -> Callable[..., None]:
    """Skip a test at the first operation W&B refuses offline, giving W&B's reason."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except WandbUnavailableError as refused:
            pytest.skip(f"W&B offline: {refused}")

    return run


def _file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _log(stores: Stores, store: ArtifactStore, path: Path, name: str) -> ArtifactVersion:
    return store.log(path, name, "demo", f"{name} for the contract", {"rows": 3}, stores.run_id)


# ------------------------------------------------------------------------------- interface
_MEMBERS = [
    name
    for name, value in vars(ArtifactStore).items()
    if callable(value) and not name.startswith("_")
]


def test_both_stores_implement_every_method_of_the_interface(stores: Stores) -> None:
    store = stores.open(PROJECT)
    assert isinstance(store, ArtifactStore)
    assert (store.kind, store.project) == (stores.kind, PROJECT)
    assert "resolve" in _MEMBERS and "source_of" in _MEMBERS and len(_MEMBERS) == 15
    for name in _MEMBERS:
        stated = inspect.signature(getattr(ArtifactStore, name))
        implemented = inspect.signature(getattr(type(store), name))
        assert [
            (p.name, p.kind, p.default, str(p.annotation)) for p in stated.parameters.values()
        ] == [
            (p.name, p.kind, p.default, str(p.annotation)) for p in implemented.parameters.values()
        ], name
        assert str(stated.return_annotation) == str(implemented.return_annotation), name


def test_open_store_names_the_kinds_it_knows() -> None:
    with pytest.raises(ValueError, match=r"'s3' is not one of mlflow, wandb"):
        open_store("s3")


# ------------------------------------------------------------------------------- checks first
def test_bad_input_is_refused_before_the_store_is_asked(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        _log(stores, store, tmp_path / "absent.txt", "thing")
    for bad in ("other/thing", "thing:v1", " thing"):
        with pytest.raises(ValueError, match="must be a bare name"):
            _log(stores, store, _file(tmp_path, "a.txt", "a"), bad)
    with pytest.raises(ValueError, match="not of the form"):
        store.resolve("a:b:c")
    for reserved in ("latest", "v2"):
        with pytest.raises(ValueError, match="reserved"):
            store.set_alias("thing:v0", reserved)
        with pytest.raises(ValueError, match="reserved"):
            store.set_alias_if_unset("thing:v0", reserved)
    committed = ArtifactVersion("thing", 0, "demo", "", "d", {}, {}, stores.run_id, {})
    with pytest.raises(ValueError, match="the artifact store's own"):
        store.set_version_tags(committed, {DIGEST_TAG: "forged"})


def test_a_store_with_nothing_logged_commits_and_discards_nothing(stores: Stores) -> None:
    store = stores.open(PROJECT)
    assert store.commit() == []
    assert store.discard() == []


# ------------------------------------------------------------------------------- writing
@skip_what_wandb_refuses
def test_log_then_commit_makes_the_version_latest(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    source = _file(tmp_path, "a.txt", "one")
    logged = _log(stores, store, source, "thing")
    assert logged.spec == "thing:v0"
    assert store.commit() == ["thing:v0"]
    found = stores.open(PROJECT).resolve("thing")  # another process's view
    assert (found.spec, found.project, found.type) == ("thing:v0", PROJECT, "demo")
    assert "latest" in found.aliases
    assert found.files == file_digests(source)
    assert found.metadata == {"rows": 3}
    assert found.producer_run_id == stores.run_id


@pytest.mark.parametrize("stores", HIDDEN_UNTIL_COMMIT, indirect=True)
def test_a_logged_version_is_pending_until_its_run_commits(stores: Stores, tmp_path: Path) -> None:
    store, reader = stores.open(PROJECT), stores.open(PROJECT)
    logged = _log(stores, store, _file(tmp_path, "a.txt", "one"), "thing")
    assert logged.state == "pending"
    with pytest.raises(ArtifactNotFoundError):
        reader.resolve("thing:latest")
    assert reader.versions("thing") == []
    assert [v.spec for v in reader.versions("thing", include_pending=True)] == ["thing:v0"]
    store.commit()
    assert reader.resolve("thing:latest").state == "committed"


@skip_what_wandb_refuses
def test_identical_content_makes_no_new_version(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    _log(stores, store, _file(tmp_path, "a.txt", "same"), "thing")
    store.commit()
    again = _log(stores, store, _file(tmp_path / "again", "a.txt", "same"), "thing")
    assert again.spec == "thing:v0"
    store.commit()
    assert [v.spec for v in store.versions("thing")] == ["thing:v0"]


@skip_what_wandb_refuses
def test_discard_leaves_nothing(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    logged = _log(stores, store, _file(tmp_path, "a.txt", "one"), "thing")
    assert len(store.discard()) == 1
    assert store.commit() == []  # discarded is not committed later
    reader = stores.open(PROJECT)
    assert reader.versions("thing", include_pending=True) == []
    assert "thing" not in reader.names()
    with pytest.raises(ArtifactNotFoundError):
        reader.resolve(logged.spec)


# ------------------------------------------------------------------------------- reading
@skip_what_wandb_refuses
def test_resolve_latest_version_and_alias(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    for text in ("one", "two"):
        _log(stores, store, _file(tmp_path / text, "a.txt", text), "thing")
        store.commit()
    store.set_alias("thing:v0", "reference")
    assert store.resolve("thing").spec == "thing:v1"
    assert store.resolve("thing:latest").spec == "thing:v1"
    assert store.resolve("thing:v0").spec == "thing:v0"
    assert store.resolve("thing:reference").spec == "thing:v0"
    assert store.resolve(f"{PROJECT}/thing:v1").spec == "thing:v1"
    assert [v.spec for v in store.versions("thing")] == ["thing:v0", "thing:v1"]
    assert store.names() == ["thing"]


@skip_what_wandb_refuses
def test_unknown_names_say_what_exists(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    _log(stores, store, _file(tmp_path, "a.txt", "one"), "present")
    store.commit()
    store.set_alias("present:v0", "prod")
    with pytest.raises(ArtifactNotFoundError, match=r"'absent'.*present"):
        store.resolve("absent:latest")
    with pytest.raises(ArtifactNotFoundError, match=r"'v7'.*v0"):
        store.resolve("present:v7")
    with pytest.raises(ArtifactNotFoundError, match=r"'staging'.*prod"):
        store.resolve("present:staging")


@skip_what_wandb_refuses
def test_set_alias_moves_it_and_if_unset_leaves_it(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    for text in ("one", "two"):
        _log(stores, store, _file(tmp_path / text, "a.txt", text), "thing")
        store.commit()
    assert store.alias_unset("thing:reference")
    assert not store.alias_unset("thing:latest")
    assert not store.alias_unset("nothing:reference")  # a typo'd name waits for no alias
    assert store.set_alias_if_unset("thing:v0", "reference")
    assert not store.set_alias_if_unset("thing:v1", "reference")
    assert store.resolve("thing:reference").spec == "thing:v0"
    assert not store.alias_unset("thing:reference")
    store.set_alias("thing:v1", "reference")
    aliases = {v.spec: v.aliases for v in store.versions("thing")}
    assert "reference" not in aliases["thing:v0"]
    assert "reference" in aliases["thing:v1"]


@skip_what_wandb_refuses
def test_download_checks_every_file_against_its_digest(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    folder = tmp_path / "folder"
    _file(folder, "a.txt", "one")
    _file(folder, "sub/b.txt", "two")
    _log(stores, store, folder, "thing")
    store.commit()
    version = store.resolve("thing:v0")
    root = store.download(version, tmp_path / "copy")
    assert file_digests(root) == version.files == file_digests(folder)
    assert manifest_digest(version.files) == manifest_digest(file_digests(folder))
    with pytest.raises(FileExistsError, match="not an empty folder"):
        store.download(version, tmp_path / "copy")
    assert store.verify("thing:v0").spec == "thing:v0"
    stores.tamper(version)
    with pytest.raises(ArtifactIntegrityError, match=r"changed: (a\.txt|sub/b\.txt)"):
        store.download(version, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()  # what it wrote is removed again
    with pytest.raises(ArtifactIntegrityError):
        store.verify("thing:v0")


@skip_what_wandb_refuses
def test_check_files_finds_a_changed_file(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    _log(stores, store, _file(tmp_path, "a.txt", "one"), "thing")
    store.commit()
    version = store.resolve("thing:v0")
    store.check_files(version)
    stores.tamper(version)
    with pytest.raises(ArtifactIntegrityError, match=r"thing:v0.*changed: a\.txt") as error:
        store.check_files(version)
    assert error.value.problems == {"changed": ["a.txt"]}


@skip_what_wandb_refuses
def test_current_is_the_version_last_logged_else_latest(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    for text in ("one", "two"):
        _log(stores, store, _file(tmp_path / text, "a.txt", text), "thing")
        store.commit()
    assert store.resolve("thing:current").spec == "thing:v1"
    store.set_alias("thing:v0", "current")  # as the pipeline moves it after a step
    assert store.resolve("thing:current").spec == "thing:v0"
    assert store.resolve("thing:latest").spec == "thing:v1"
    _log(stores, store, _file(tmp_path / "again", "a.txt", "two"), "thing")  # known content
    store.commit()
    assert store.resolve("thing:current").spec == "thing:v1"


@skip_what_wandb_refuses
def test_a_one_file_artifact_downloads_as_its_file(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    _log(stores, store, _file(tmp_path, "data.parquet", "rows"), "thing")
    store.commit()
    path = store.download(store.resolve("thing:latest"), tmp_path / "copy")
    assert (path.name, path.read_text()) == ("data.parquet", "rows")


@skip_what_wandb_refuses
def test_projects_are_separate(stores: Stores, tmp_path: Path) -> None:
    dev, prod = stores.open(f"{PROJECT}_dev"), stores.open(f"{PROJECT}_prod")
    _log(stores, dev, _file(tmp_path / "dev", "a.txt", "dev"), "shared")
    dev.commit()
    _log(stores, prod, _file(tmp_path / "prod", "a.txt", "prod"), "shared")
    prod.commit()
    prod.set_alias("shared:v0", "prod")
    assert dev.resolve("shared").spec == prod.resolve("shared").spec == "shared:v0"
    assert dev.resolve("shared").digest != prod.resolve("shared").digest
    other = dev.resolve(f"{PROJECT}_prod/shared:prod")  # another project's, named
    assert (other.project, other.digest) == (f"{PROJECT}_prod", prod.resolve("shared").digest)
    with pytest.raises(ArtifactNotFoundError):
        dev.resolve("shared:prod")  # prod's alias never moves dev's versions
    assert dev.names() == prod.names() == ["shared"]


# ------------------------------------------------------------------------------- notes, uses
@skip_what_wandb_refuses
def test_a_check_result_is_recorded_on_the_version(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    _log(stores, store, _file(tmp_path, "a.txt", "one"), "thing")
    store.commit()
    version = store.resolve("thing:v0")
    assert version.check == ""
    store.set_version_tags(version, {CHECK_TAG: "failed", CHECK_RUN_TAG: "run1"})
    store.set_version_tags(version, {CHECK_TAG: "passed", CHECK_RUN_TAG: "run2"})
    noted = stores.open(PROJECT).resolve("thing:v0")
    assert (noted.check, noted.check_run_id) == ("passed", "run2")
    assert noted.digest == version.digest


@skip_what_wandb_refuses
def test_source_of_names_where_the_files_are(stores: Stores, tmp_path: Path) -> None:
    store = stores.open(PROJECT)
    logged = _log(stores, store, _file(tmp_path, "a.txt", "one"), "thing")
    assert store.source_of(logged.spec) == logged.source  # before the run commits too
    store.commit()
    assert store.source_of("thing:v0") == store.resolve("thing:v0").source


# ------------------------------------------------------------------------------- a run's use
def test_use_artifact_returns_the_exact_version_and_its_checked_file(tracking: Path) -> None:
    import pandas as pd

    from util_lib.step.run import open_run

    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(tracking / "t.parquet")
    producer = open_run("producer", "test")
    producer.log_artifact(tracking / "t.parquet", "table", "demo", "a table")
    producer.close()
    producer = open_run("producer", "test")
    producer.store.set_alias("table:v0", "reference")
    producer.close()

    consumer = open_run("consumer", "test")
    used = consumer.use_artifact("table:reference")
    consumer.close()
    assert isinstance(used, UsedArtifact)
    assert (used.spec, used.version.spec) == ("table:v0", "table:v0")
    assert used.version.digest == manifest_digest(file_digests(tracking / "t.parquet"))
    assert used.path.name == "t.parquet"
    assert pd.read_parquet(used)["a"].tolist() == [1, 2, 3]  # path-like, as notebooks use it
    assert consumer.store.resolve("table:v0").used_by == {consumer.run_id: "consumer"}


# ------------------------------------------------------------------------------- W&B offline
def test_what_wandb_refuses_offline_is_named_with_its_words(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tracking / "no_netrc"))  # no key from a netrc file either
    run = wandb.init(project=PROJECT, mode="offline", settings=wandb.Settings(silent=True))
    try:
        store = open_store("wandb", wandb_run=run)
        with pytest.raises(WandbUnavailableError, match="log thing here: 'Artifact.wait' used"):
            store.log(_file(tracking, "a.txt", "one"), "thing", "demo", "", None, "r1")
        with pytest.raises(WandbUnavailableError, match="Cannot use artifact when in offline"):
            store.resolve("thing:latest")
        with pytest.raises(WandbUnavailableError, match="No API key configured"):
            store.names()
        with pytest.raises(WandbUnavailableError, match="No API key configured"):
            store.set_alias("thing:v0", "prod")
        assert store.commit() == []  # the refused version was never numbered
    finally:
        run.finish()


def test_wandb_specs_name_entity_and_project() -> None:
    from util_lib.artifacts.wandb_store import WandbArtifactStore

    store = WandbArtifactStore(project="genres", entity="team")
    assert (store.kind, store.project, store.tracking_uri) == (
        "wandb",
        "genres",
        "wandb:team/genres",
    )
    assert store.source_of("model_export:v3") == "team/genres/model_export:v3"
    assert store.source_of("genres_prod/model_export:prod") == "team/genres_prod/model_export:prod"
    with pytest.raises(ValueError, match="the W&B store logs through a W&B run"):
        store.log(Path("a.txt"), "thing", "demo", "", None, "r1")
