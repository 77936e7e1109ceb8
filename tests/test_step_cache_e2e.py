"""The step cache through `mlflow run`: the same command twice runs nothing the second time, one
forest parameter changed runs train and evaluate only, and after a failure the same command
resumes at the failed step. Real stores, the bundled dataset; W&B offline for the module's
first run and the all-cached reruns (as a user without an account runs them), off otherwise.

The tests that use ``first`` share its folder and run in this file's order: each builds on the
state the ones above it left (the all-cached reruns come before a forest parameter changes).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline_runs import SMALL_FOREST, STEPS, PipelineRun, mlflow_run

pytestmark = pytest.mark.e2e


def _statuses(run: PipelineRun) -> dict[str, str]:
    """Each step's status on the progress lines (`[3/6] check_data CACHED 0.1 s (run ...)`)."""
    found = re.findall(r"^\[\d+/\d+\] (\w+) (FINISHED|CACHED|FAILED) ", run.result.stdout, re.M)
    return dict(found)


def _step_runs(run: PipelineRun) -> list:
    return run.runs("tags.`util_lib.step` != ''")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def first(workdir: Path) -> PipelineRun:
    """The module's first run: every step runs, W&B offline."""
    # A progress line every second while a step works (30 s by default).
    return mlflow_run(
        workdir, SMALL_FOREST, wandb_mode="offline", UTIL_LIB_PROGRESS_SECONDS="1"
    ).check()


@pytest.fixture(scope="module")
def forest_changed(workdir: Path, first: PipelineRun) -> PipelineRun:
    """After ``first``, the same command with another forest: model_export:v1."""
    return mlflow_run(workdir, SMALL_FOREST, "model.max_depth=9").check()


def test_each_step_says_when_it_starts_ends_and_that_it_still_works(first: PipelineRun) -> None:
    out = first.result.stdout
    for index, step in enumerate(STEPS, 1):
        assert f"[{index}/6] {step} …\n" in out
        assert re.search(
            rf"^\[{index}/6\] {step} FINISHED \d+\.\d s \(run [0-9a-f]{{32}}\)$", out, re.M
        )
    assert re.search(r"^\[5/6\] train_random_forest … still running \(\d+ s\)$", out, re.M)
    # The driver's log lines in the log file only (the terminal shows the progress lines; Hydra's
    # format nowhere), and no link to the pipeline's own tracking server, which ends with the
    # pipeline.
    console = out + first.result.stderr
    log = (first.workdir / "ml_pipeline.log").read_text()
    for step in STEPS:
        assert f"main: {step}: FINISHED in " not in console, step
        assert log.count(f"main: {step}: FINISHED in ") == 1, step
    assert "[HYDRA]" not in console
    assert "View run" not in console


def test_the_same_command_again_runs_nothing(workdir: Path, first: PipelineRun) -> None:
    from mlflow import MlflowClient

    assert _statuses(first) == dict.fromkeys(STEPS, "FINISHED")
    before = {r.info.run_id for r in _step_runs(first)}
    again = mlflow_run(workdir, SMALL_FOREST).check()
    assert _statuses(again) == dict.fromkeys(STEPS, "CACHED")
    assert {r.info.run_id for r in _step_runs(again)} == before  # no step process, no run
    # The summary names the reused runs and their metrics; the pipeline run records them.
    summary = again.result.stdout.split("Pipeline summary", 1)[1]
    assert "CACHED" in summary and "val_auc=" in summary and "test_auc=" in summary
    client = MlflowClient(again.tracking_uri)
    pipeline = client.search_runs(
        [_step_runs(again)[0].info.experiment_id],
        filter_string="attributes.run_name = 'pipeline'",
        order_by=["attributes.start_time DESC"],
    )[0]
    tags = pipeline.data.tags
    assert {tags[f"util_lib.step_status.{s}"] for s in STEPS} == {"CACHED"}
    assert {tags[f"util_lib.step_run.{s}"] for s in STEPS} == before
    assert pipeline.data.metrics["val_auc"] > 0.9


def test_all_cached_reruns_in_one_folder_always_succeed(workdir: Path, first: PipelineRun) -> None:
    """Issue 19: all-cached reruns used to die now and then with CPython 3.11's "AST
    constructor recursion depth mismatch" (the driver parsed sources while W&B's and the
    lineage libraries' threads did too). W&B offline, as a user without an account runs it:
    the first run's command again, three times in its folder."""
    for attempt in range(1, 4):
        again = mlflow_run(workdir, SMALL_FOREST, wandb_mode="offline")
        assert again.returncode == 0, f"rerun {attempt}:\n{again.stderr[-6000:]}"
        assert _statuses(again) == dict.fromkeys(STEPS, "CACHED"), f"rerun {attempt}"


def test_a_forest_parameter_reruns_train_and_evaluate_only(forest_changed: PipelineRun) -> None:
    statuses = _statuses(forest_changed)
    assert statuses == {
        **dict.fromkeys(STEPS[:4], "CACHED"),
        "train_random_forest": "FINISHED",
        "evaluate": "FINISHED",
    }
    assert "model_export:v1" in forest_changed.result.stdout


def test_a_step_run_alone_reads_what_the_last_pipeline_reported(
    workdir: Path, forest_changed: PipelineRun
) -> None:
    """Another forest makes model_export:v1 the latest; the first command again reuses every
    step, model_export:v0 among them; evaluate run alone then scores v0, not the latest."""
    again = mlflow_run(workdir, SMALL_FOREST).check()
    assert _statuses(again) == dict.fromkeys(STEPS, "CACHED")
    store = again.store()
    assert store.resolve("model_export:latest").spec == "model_export:v1"
    assert store.resolve("model_export:current").spec == "model_export:v0"
    alone = mlflow_run(
        workdir, SMALL_FOREST, "main.execute_steps=evaluate", "main.cache=false"
    ).check()
    assert _statuses(alone) == {"evaluate": "FINISHED"}
    evaluate = alone.step_runs()["evaluate"]
    assert evaluate.data.params["model_export"] == "model_export:current"
    used = evaluate.data.tags["util_lib.artifacts_used"].split(",")
    assert used == ["model_export:v0", store.resolve("data_test:current").spec]


def _kept_file(store, spec: str) -> Path:
    """The one file the store (on the local disk) keeps of the version ``spec``."""
    import mlflow.artifacts

    version = store.resolve(spec)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source))
    return folder / next(iter(version.files))


def test_a_damaged_output_runs_its_step_again_and_the_pipeline_recovers(
    workdir: Path, first: PipelineRun
) -> None:
    """One bit flipped in the data_test a cached pipeline would reuse: segregate runs again and
    writes a sound version (same content, so the later steps stay cached); then, with the step
    cache off, a deleted file: the store does not hand the damaged version on again."""
    store = first.store()
    damaged = store.resolve("data_test:latest")
    kept = _kept_file(store, damaged.spec)
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 1
    kept.write_bytes(bytes(data))

    rerun = mlflow_run(workdir, SMALL_FOREST).check()
    assert _statuses(rerun) == {**dict.fromkeys(STEPS, "CACHED"), "segregate": "FINISHED"}
    said = rerun.stdout + rerun.stderr
    assert f"{damaged.spec}" in said and f"changed: {kept.name}" in said
    sound = store.resolve("data_test:latest")
    assert sound.spec != damaged.spec and sound.digest == damaged.digest
    assert store.resolve(damaged.spec).damaged == f"changed: {kept.name}"
    assert store.resolve("data_test:current").spec == sound.spec
    store.check_files(sound)

    _kept_file(store, sound.spec).unlink()
    uncached = mlflow_run(workdir, SMALL_FOREST, "main.cache=false").check()
    assert _statuses(uncached) == dict.fromkeys(STEPS, "FINISHED")
    newest = store.resolve("data_test:latest")
    assert newest.spec not in (damaged.spec, sound.spec)
    assert store.resolve("data_test:current").spec == newest.spec
    assert store.resolve(sound.spec).damaged == f"missing: {kept.name}"
    evaluate = uncached.step_runs()["evaluate"]
    assert newest.spec in evaluate.data.tags["util_lib.artifacts_used"].split(",")


def test_after_a_failure_the_same_command_resumes_at_the_failed_step(
    tmp_path: Path, dataset_path: Path
) -> None:
    """A drifted first dataset became the reference, so the real data fail check_data; after
    the user moves the reference, the same command resumes at check_data."""
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    drifted = tmp_path / "drifted.parquet"
    songs = pd.read_parquet(dataset_path)
    songs.assign(tempo=songs["tempo"] * 0.7).to_parquet(drifted, index=False)
    mlflow_run(
        tmp_path, "main.execute_steps='get_data,preprocess,check_data'",
        f"data.file_url={drifted}", "data.sha256=null",
    ).check()  # fmt: skip
    command = (SMALL_FOREST,)
    failed = mlflow_run(tmp_path, *command)
    assert failed.result.returncode != 0
    assert _statuses(failed) == {
        "get_data": "FINISHED",
        "preprocess": "FINISHED",
        "check_data": "FAILED",
    }
    said = failed.result.stdout + failed.result.stderr
    assert "run the same command again: it resumes at check_data" in said

    store = MlflowArtifactStore(failed.tracking_uri, "music_genre_classification")
    good = store.resolve("preprocessed_data:latest")
    assert good.spec == "preprocessed_data:v1"
    store.set_alias(good.spec, "reference")
    resumed = mlflow_run(tmp_path, *command).check()
    assert _statuses(resumed) == {
        "get_data": "CACHED",
        "preprocess": "CACHED",
        **dict.fromkeys(STEPS[2:], "FINISHED"),
    }
