"""Lineage: a chain of real step runs on a SQLite store (raw -> clean -> train/test -> model ->
report), traced back to the raw data, printed, drawn, and logged for a pipeline run."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
from pathlib import Path

import pytest

from tests.cli import run_main
from util_lib.artifacts.cli import main as artifacts_main
from util_lib.artifacts.digests import code_digest, params_digest
from util_lib.artifacts.interface import ArtifactNotFoundError
from util_lib.artifacts.lineage import format_lineage, trace_lineage
from util_lib.artifacts.lineage_picture import draw_lineage, log_pipeline_lineage
from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.step.run import start_run
from util_lib.step.trackers import flatten

REPO = Path(__file__).resolve().parents[2]
PROJECT = "music_genre_classification"
CONFIGS = {
    "get_data": {"file_url": "dataset.parquet"},
    "preprocess": {"input_artifact": "raw_data.parquet:latest"},
    "segregate": {"test_size": 0.3, "stratify": "genre"},
    "train_random_forest": {"max_depth": 3, "tfidf": {"max_features": 10}},
    "evaluate": {},
}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def chain(tracking: Path) -> dict[str, str]:
    """Five step runs that log and use artifacts in a chain; returns {step: run id}."""
    files = tracking / "files"
    runs: dict[str, str] = {}
    with start_run("get_data", "download_data", CONFIGS["get_data"]) as run:
        run.log_artifact(_write(files / "raw.parquet", "raw"), "raw_data.parquet", "raw_data", "r")
    runs["get_data"] = run.run_id
    with start_run("preprocess", "preprocess_data", CONFIGS["preprocess"]) as run:
        run.use_artifact("raw_data.parquet:latest")
        clean = _write(files / "clean.parquet", "clean")
        run.log_artifact(clean, "preprocessed_data", "preprocessed_data", "c")
    runs["preprocess"] = run.run_id
    with start_run("segregate", "split_data", CONFIGS["segregate"]) as run:
        run.use_artifact("preprocessed_data:v0")
        for part in ("train", "test"):
            data = _write(files / "split" / f"{part}.parquet", part)
            run.log_artifact(data, f"data_{part}", "segregated_data", part)
    runs["segregate"] = run.run_id
    with start_run("train_random_forest", "train", CONFIGS["train_random_forest"]) as run:
        run.use_artifact("data_train:v0")
        _write(files / "model" / "MLmodel", "flavors: {}")
        _write(files / "model" / "model.skops", "weights")
        run.log_artifact(files / "model", "model_export", "model_export", "m")
    runs["train_random_forest"] = run.run_id
    with start_run("evaluate", "test_model", CONFIGS["evaluate"]) as run:
        run.use_artifact("model_export:v0")
        run.use_artifact("data_test:v0")
        run.log_artifact(_write(files / "report.json", "{}"), "report", "report", "scores")
    runs["evaluate"] = run.run_id
    return runs


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m util_lib.artifacts ARGS` in ``cwd``, in this process (tests/cli.py)."""
    with contextlib.chdir(cwd):
        return run_main(artifacts_main, *args)


def test_the_model_s_lineage_lists_every_version_back_to_raw(chain: dict[str, str]) -> None:
    store = MlflowArtifactStore()
    lineage = trace_lineage(store, ["model_export:latest"])
    expected = ["model_export", "data_train", "preprocessed_data", "raw_data.parquet"]
    assert list(lineage.versions) == [f"{PROJECT}/{name}:v0" for name in expected]
    # Upstream only: the test split and the evaluation are not the model's ancestors.
    assert set(lineage.runs) == {
        chain[s] for s in ("get_data", "preprocess", "segregate", "train_random_forest")
    }
    assert lineage.raw() == [f"{PROJECT}/raw_data.parquet:v0"]
    producers = {
        "model_export": "train_random_forest",
        "data_train": "segregate",
        "preprocessed_data": "preprocess",
        "raw_data.parquet": "get_data",
    }
    for name, step in producers.items():
        node = lineage.versions[f"{PROJECT}/{name}:v0"]
        assert node.producer == chain[step], name
        assert node.digest == store.resolve(f"{name}:v0").digest
        assert (chain[step], node.spec, "produced") in lineage.edges
        run = lineage.runs[chain[step]]
        assert run.step == step and run.status == "FINISHED"
        assert run.code_digest == code_digest([None])
        assert run.config_digest == params_digest(flatten(CONFIGS[step]))
    assert lineage.runs[chain["get_data"]].used == []
    assert lineage.runs[chain["train_random_forest"]].used == [f"{PROJECT}/data_train:v0"]
    assert (f"{PROJECT}/data_train:v0", chain["train_random_forest"], "used") in lineage.edges


def test_a_version_made_of_two_branches_reaches_raw_through_both(chain: dict[str, str]) -> None:
    lineage = trace_lineage(MlflowArtifactStore(), ["report:v0"])
    names = {spec.split("/")[1] for spec in lineage.versions}
    assert names == {
        "report:v0",
        "model_export:v0",
        "data_test:v0",
        "data_train:v0",
        "preprocessed_data:v0",
        "raw_data.parquet:v0",
    }
    assert len(lineage.runs) == 5  # segregate once, though both splits lead to it
    produced = [e for e in lineage.edges if e[0] == chain["segregate"]]
    assert len(produced) == 2


def test_text_names_each_version_its_producer_digests_and_inputs(chain: dict[str, str]) -> None:
    store = MlflowArtifactStore()
    lineage = trace_lineage(store, ["model_export:v0"])
    text = format_lineage(lineage)
    assert text.splitlines()[0] == "lineage of model_export:v0"
    for name, step in (("model_export", "train_random_forest"), ("raw_data.parquet", "get_data")):
        version = store.resolve(f"{name}:v0")
        block = text.split(f"\n{name}:v0  ")[1].split("\n\n")[0]
        assert f"sha256 {version.digest[:12]}" in block
        assert f"produced by  {step} (run {chain[step]}, FINISHED)" in block
        assert code_digest([None])[:12] in block
        assert params_digest(flatten(CONFIGS[step]))[:12] in block
    assert "which used   data_train:v0" in text
    assert "which used   nothing (raw data)" in text
    assert text.endswith("raw data: raw_data.parquet:v0")


def test_cli_prints_the_chain(chain: dict[str, str], tracking: Path) -> None:
    result = _cli("lineage", "model_export:latest", cwd=tracking)
    assert result.returncode == 0, result.stderr
    for spec in ("model_export:v0", "data_train:v0", "preprocessed_data:v0", "raw_data.parquet:v0"):
        assert f"\n{spec}  sha256 " in result.stdout, spec
    for step in ("train_random_forest", "segregate", "preprocess", "get_data"):
        assert f"{step} (run {chain[step]}" in result.stdout, step
    assert result.stdout.rstrip().endswith("raw data: raw_data.parquet:v0")


def test_cli_draws_svg_and_html(chain: dict[str, str], tracking: Path) -> None:
    import xml.etree.ElementTree as ElementTree

    labels = ("report:v0", "data_test:v0", "raw_data.parquet:v0", "segregate")
    for suffix in ("svg", "html"):
        out = tracking / "drawn" / f"lineage.{suffix}"
        result = _cli("lineage", "report:v0", "--out", str(out), cwd=tracking)
        assert result.returncode == 0, result.stderr
        assert f"drawn to {out}" in result.stdout
        text = out.read_text()
        assert "<svg" in text
        for label in (*labels, chain["segregate"][:8]):
            assert label in text, (suffix, label)
    assert "<pre>lineage of report:v0" in (tracking / "drawn" / "lineage.html").read_text()
    # A well-formed picture: a box per version and run, an arrow per edge, raw data on top.
    svg = ElementTree.parse(tracking / "drawn" / "lineage.svg").getroot()
    ns = {"svg": "http://www.w3.org/2000/svg"}
    lineage = trace_lineage(MlflowArtifactStore(), ["report:v0"])
    boxes = svg.findall("svg:rect", ns)
    assert len(boxes) == len(lineage.versions) + len(lineage.runs)
    assert len(svg.findall("svg:line", ns)) == len(lineage.edges)
    tops = {t.text: float(t.get("y")) for t in svg.findall("svg:text", ns)}
    assert tops["raw_data.parquet:v0"] < tops["data_test:v0"] < tops["report:v0"]


def test_json_holds_the_graph(chain: dict[str, str], tracking: Path) -> None:
    lineage = trace_lineage(MlflowArtifactStore(), ["data_test:v0"])
    graph = json.loads(draw_lineage(lineage, tracking / "l.json").read_text())
    assert graph["raw"] == [f"{PROJECT}/raw_data.parquet:v0"]
    assert {r["step"] for r in graph["runs"]} == {"get_data", "preprocess", "segregate"}
    edge = {"source": chain["segregate"], "target": f"{PROJECT}/data_test:v0", "kind": "produced"}
    assert edge in graph["edges"]


def test_unknown_spec_or_format_exits_1_naming_what_exists(
    chain: dict[str, str], tracking: Path
) -> None:
    missing = _cli("lineage", "nothing:v0", cwd=tracking)
    assert missing.returncode == 1
    assert "'nothing' not found" in missing.stderr and "model_export" in missing.stderr
    bad_version = _cli("lineage", "model_export:v7", cwd=tracking)
    assert bad_version.returncode == 1
    assert "'v7'" in bad_version.stderr and "v0 [latest, current]" in bad_version.stderr
    bad_format = _cli("lineage", "model_export:v0", "--out", "lineage.gif", cwd=tracking)
    assert bad_format.returncode == 1 and "lineage.gif" in bad_format.stderr
    assert ".svg, .html, .json" in bad_format.stderr
    with pytest.raises(ArtifactNotFoundError, match="nothing"):
        trace_lineage(MlflowArtifactStore(), ["nothing:v0"])


def test_pipeline_run_logs_its_lineage_to_mlflow_and_wandb(
    chain: dict[str, str], tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("WANDB_MODE", "offline")
    with mlflow.start_run(run_name="pipeline") as pipeline:
        pass
    steps = [chain[s] for s in ("get_data", "preprocess", "segregate", "evaluate")]
    written = ["data_train:v0", "data_test:v0", "report:v0"]
    assert log_pipeline_lineage(pipeline.info.run_id, written, steps) == Path("lineage/lineage.svg")
    client = MlflowClient()
    logged = {f.path for f in client.list_artifacts(pipeline.info.run_id, "lineage")}
    assert logged == {f"lineage/lineage.{s}" for s in ("svg", "html", "json", "txt")}
    local = Path(mlflow.artifacts.download_artifacts(run_id=pipeline.info.run_id))
    assert (local / "lineage" / "lineage.svg").read_text().startswith("<svg")
    graph = json.loads((local / "lineage" / "lineage.json").read_text())
    assert graph["roots"][:3] == [f"{PROJECT}/{s}" for s in written]
    assert graph["raw"] == [f"{PROJECT}/raw_data.parquet:v0"]
    # The step runs, and the model's producer reached through report:v0's evaluate run.
    assert {r["step"] for r in graph["runs"]} >= {"segregate", "evaluate", "train_random_forest"}
    text = (local / "lineage" / "lineage.txt").read_text()
    assert text.startswith(f"lineage of pipeline run {pipeline.info.run_id}\n")
    assert "\nrun evaluate" not in text  # evaluate wrote report:v0: it shows as its producer
    offline = sorted((tracking / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    media = [p.name for p in (offline[0] / "files" / "media").rglob("*") if p.is_file()]
    pages = [p for p in (offline[0] / "files" / "media").rglob("*.html")]
    assert any("<svg" in p.read_text() for p in pages), media
    wandb_json = json.loads((offline[0] / "files" / "lineage.json").read_text())
    assert wandb_json["raw"] == graph["raw"]


def test_a_pipeline_lineage_that_fails_warns_and_does_not_raise(
    tracking: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="util_lib.artifacts.lineage_picture"):
        assert log_pipeline_lineage("0" * 32, ["raw_data.parquet:v0"]) is None
    assert "could not draw the pipeline's lineage" in caplog.text
