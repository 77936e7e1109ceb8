"""Notes on committed versions (a data check's verdict) and unset aliases, on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import CHECK_RUN_TAG, CHECK_TAG, DIGEST_TAG
from util_lib.step.run import open_run, start_run


def _log(tracking: Path, text: str) -> str:
    (tracking / "f.txt").write_text(text)
    with start_run("producer", "test") as run:
        return run.log_artifact(tracking / "f.txt", "noted", "demo", "d")


def test_record_check_tags_the_version_and_a_recheck_replaces_it(tracking: Path) -> None:
    spec = _log(tracking, "one")
    store = MlflowArtifactStore()
    assert (store.resolve(spec).check, store.resolve(spec).check_run_id) == ("", "")
    with start_run("check_data", "data_check") as run:
        run.record_check(spec, passed=False)
        first = run.run_id
    version = store.resolve(spec)
    assert (version.check, version.check_run_id) == ("failed", first)
    with start_run("check_data", "data_check") as run:
        run.record_check(spec, passed=True)
        second = run.run_id
    assert [(v.check, v.check_run_id) for v in store.versions("noted")] == [("passed", second)]
    registry = store.client.get_model_version(version.registry_name, version.registry_version)
    assert registry.tags[CHECK_TAG] == "passed" and registry.tags[CHECK_RUN_TAG] == second


def test_the_store_s_own_tags_and_pending_versions_cannot_be_tagged(tracking: Path) -> None:
    spec = _log(tracking, "one")
    store = MlflowArtifactStore()
    version = store.resolve(spec)
    with pytest.raises(ValueError, match="artifact store's own"):
        store.set_version_tags(version, {DIGEST_TAG: "0" * 64})
    assert store.resolve(spec).digest == version.digest
    (tracking / "g.txt").write_text("two")
    run = open_run("producer", "test")
    try:
        pending = run.store.log(tracking / "g.txt", "noted", "demo", "d", None, run.run_id)
        with pytest.raises(ValueError, match="not committed"):
            run.store.set_version_tags(pending, {CHECK_TAG: "passed"})
    finally:
        run.close(failed=True)


def test_alias_unset_only_for_an_alias_of_an_existing_artifact(tracking: Path) -> None:
    spec = _log(tracking, "one")
    store = MlflowArtifactStore()
    assert store.alias_unset("noted:reference") is True
    assert store.alias_unset("noted:latest") is False
    assert store.alias_unset("noted:v3") is False  # a missing version is not an alias
    assert store.alias_unset("noted_typo:reference") is False  # nor is a missing artifact
    store.set_alias(spec, "reference")
    assert store.alias_unset("noted:reference") is False
