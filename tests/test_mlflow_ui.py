"""MLflow's UI in a real browser after a real pipeline run: what a person sees from the link the
pipeline prints.

One `mlflow run` (a 20-tree forest, W&B off: tests/conftest.py's ``local_run``, which the
deploy tests look at too) fills a fresh SQLite store; `mlflow ui` serves it
on a free port of 127.0.0.1; Debian's chromium, headless, renders the pages (the UI is a
JavaScript app: ``--dump-dom`` gives the rendered document) from a new, empty profile each time.
The pipeline run page (the printed link), the runs table, the training run's page and the
experiment's Models tab are checked against the store; a screenshot of the pipeline run page is
written to the test's folder, and with ``UPDATE_SCREENSHOT=1`` over README's
``docs/pipeline_run.png`` (nothing is compared pixel by pixel):

    UPDATE_SCREENSHOT=1 pytest tests/test_mlflow_ui.py -k screenshot
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from serving.local_server import free_port
from tests import tools
from tests.pipeline_runs import STEPS, PipelineRun, pipeline_env

# local_run (tests/conftest.py) is made once for the files of its group.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local_run")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless, no GPU, and nothing that reaches beyond 127.0.0.1 (updates, sync, QUIC probes).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
# Virtual time (ms) the page gets to fetch and render; doubled while something is missing.
BUDGETS = (15_000, 30_000, 60_000)
# Wide enough for the run page's two columns beside MLflow's assistant panel (at 1400 px the
# metrics drop below the fold).
SCREEN = "1920,1080"
# The Models tab draws only the columns in view: wide enough for the metric columns.
WIDE = "3000,1000"
# README's picture of the pipeline run page, replaced when UPDATE_SCREENSHOT=1.
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "pipeline_run.png"
LINK = re.compile(r"then open http://127\.0\.0\.1:5000(/#/experiments/(\d+)/runs/(\w+)\?\S+)")
# What each step does with the data it reads (its context; written data is `output`), on the
# first pipeline run of a store (check_data has no drift reference yet).
DATASETS = {
    "get_data": {"raw_data.parquet:v0": "output"},
    "preprocess": {"raw_data.parquet:v0": "raw", "preprocessed_data:v0": "output"},
    "check_data": {"preprocessed_data:v0": "validation"},
    "segregate": {
        "preprocessed_data:v0": "preprocessed",
        "data_train:v0": "output",
        "data_test:v0": "output",
    },
    "train_random_forest": {"data_train:v0": "training"},
    "evaluate": {"data_test:v0": "testing"},
}


@dataclass
class Page:
    """A rendered page: its text, and the text of each runs-table row by run id."""

    url: str
    text: str
    rows: dict[str, str] = field(default_factory=dict)

    def missing(self, expected: list[str]) -> list[str]:
        return [e for e in expected if e not in self.text]


class _Text(HTMLParser):
    """The visible text of a document (scripts and styles left out), and of each row of an
    AG Grid table (``<div role="row" row-id="<run id>">``, split over pinned columns)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.rows: dict[str, list[str]] = defaultdict(list)
        self._hidden = 0
        self._depth = 0  # of open divs
        self._row: tuple[str, int] | None = None  # the row being read, and its div's depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript"):
            self._hidden += 1
        if tag != "div":
            return
        self._depth += 1
        found = dict(attrs)
        if self._row is None and found.get("role") == "row" and found.get("row-id"):
            self._row = (str(found["row-id"]), self._depth)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript"):
            self._hidden -= 1
        if tag != "div":
            return
        if self._row is not None and self._row[1] == self._depth:
            self._row = None
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        self.parts.append(data)
        if self._row is not None:
            self.rows[self._row[0]].append(data)


def _words(parts: list[str]) -> str:
    return " ".join(" ".join(parts).split())


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        tools.missing("chromium", "load MLflow's UI in a headless browser")
    profile.mkdir(parents=True)  # new and empty: no state from another page or test
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def render(url: str, expected: list[str], profiles: Path, window: str = SCREEN) -> Page:
    """The page at ``url`` once rendered, read again with more time while any of ``expected``
    is missing (the last reading when it never shows)."""
    for budget in BUDGETS:
        result = _chromium(
            [f"--window-size={window}", f"--virtual-time-budget={budget}", "--dump-dom", url],
            profiles / f"profile-{time.monotonic_ns()}",
        )
        assert result.returncode == 0, result.stderr[-4000:]
        parser = _Text()
        parser.feed(result.stdout)
        page = Page(url, _words(parser.parts), {k: _words(v) for k, v in parser.rows.items()})
        if not page.missing(expected):
            break
    return page


@pytest.fixture(scope="module")
def pipeline(local_run: PipelineRun) -> PipelineRun:
    """A first pipeline run on a fresh store (a small forest, W&B off)."""
    return local_run


@pytest.fixture(scope="module")
def ui(pipeline: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow ui` on the pipeline's store, on a free port; yields its base URL.

    It works in a folder of its own: the pipeline's is shared with other tests.
    """
    port = free_port()
    folder = tmp_path_factory.mktemp("mlflow_ui")
    log = folder / "mlflow_ui.log"
    command = ["mlflow", "ui", "--backend-store-uri", pipeline.tracking_uri]
    # One worker is plenty for one browser (MLflow starts 4 by default).
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # MLflow's job runner (eight queue consumers, for GenAI jobs) is of no use to a browser.
    env = pipeline_env(folder, pipeline.tracking_uri)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log.open("wb") as out:
        # A session of its own: the server's workers are its children, stopped with it.
        server = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _answers(f"{base}/health"):
            assert server.poll() is None, f"mlflow ui exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"mlflow ui silent:\n{log.read_text()[-4000:]}"
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # whatever of the group still runs
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def link(pipeline: PipelineRun, ui: str) -> tuple[str, str, str]:
    """The pipeline run page the summary printed, on the test's port: (URL, experiment, run)."""
    found = LINK.search(pipeline.stdout)
    assert found, f"no link to the pipeline run in the summary:\n{pipeline.stdout[-3000:]}"
    return ui + found[1], found[2], found[3]


def test_the_printed_link_shows_the_pipeline_its_steps_data_model_and_scores(
    pipeline: PipelineRun, link: tuple[str, str, str], tmp_path: Path
) -> None:
    url, _, run_id = link
    run = next(r for r in pipeline.runs() if r.info.run_id == run_id)
    assert run.info.run_name == "pipeline"
    scores = [str(run.data.metrics["val_auc"]), str(run.data.metrics["test_auc"])]
    expected = ["pipeline", "Child runs", *STEPS, "val_auc", "test_auc", *scores]
    # The data its steps used and the model they made (main.py records them on this run).
    digest = pipeline.store().resolve("raw_data.parquet:v0").digest[:12]
    expected += ["Datasets", f"raw_data.parquet:v0 ({digest}) raw", "+3", "Logged models (1)"]
    page = render(url, expected, tmp_path)
    assert not page.missing(expected), f"{page.missing(expected)} not on {url}:\n{page.text}"
    assert "model_export" in page.text.split("Logged models (1)", 1)[1]
    # The model-training view, not the GenAI one (traces) the experiment would open in.
    assert "Model metrics" in page.text and "No data available" not in page.text


def test_the_runs_table_lists_each_step_s_datasets(
    pipeline: PipelineRun, ui: str, link: tuple[str, str, str], tmp_path: Path
) -> None:
    store = pipeline.store()
    # Sorted by name, MLflow lists the child runs flat (by date, folded under the pipeline).
    url = f"{ui}/#/experiments/{link[1]}/runs?workflowType=machine_learning"
    url += "&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true"
    expected = {
        step: [
            f"{spec} ({store.resolve(spec).digest[:12]}) {context}"
            for spec, context in DATASETS[step].items()
        ]
        for step in STEPS
    }
    page = render(url, [e for step in STEPS for e in expected[step]], tmp_path)
    runs = pipeline.step_runs()
    for step in STEPS:
        row = page.rows.get(runs[step].info.run_id, "")
        assert f" {step} " in f" {row} ", f"no row of {step} on {url}:\n{page.text}"
        assert [e for e in expected[step] if e not in row] == [], row
    # An exported model is a logged model (the Models column), not a dataset.
    assert "model_export:v0 (" not in page.rows[runs["evaluate"].info.run_id]


def test_the_training_run_page_lists_its_data_and_its_model(
    pipeline: PipelineRun, ui: str, link: tuple[str, str, str], tmp_path: Path
) -> None:
    train = pipeline.step_runs()["train_random_forest"]
    digest = pipeline.store().resolve("data_train:v0").digest[:12]
    url = f"{ui}/#/experiments/{link[1]}/runs/{train.info.run_id}?workflowType=machine_learning"
    expected = ["Datasets", f"data_train:v0 ({digest}) training", "Logged models (1)"]
    page = render(url, [*expected, "model_export"], tmp_path)
    assert not page.missing(expected), f"{page.missing(expected)} not on {url}:\n{page.text}"
    logged = page.text.split("Logged models (1)", 1)[1]
    assert "model_export" in logged and "Ready" in logged


def test_the_models_tab_lists_the_model_with_its_scores(
    pipeline: PipelineRun, ui: str, link: tuple[str, str, str], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    (model,) = MlflowClient(pipeline.tracking_uri).search_logged_models([link[1]])
    scores = {m.key: str(m.value) for m in model.metrics}
    assert {"val_auc", "test_auc"} <= set(scores)
    url = f"{ui}/#/experiments/{link[1]}/models?workflowType=machine_learning"
    expected = [model.name, "train_random_forest", "val_auc", "test_auc"]
    expected += [scores["val_auc"], scores["test_auc"]]
    page = render(url, expected, tmp_path, window=WIDE)
    assert not page.missing(expected), f"{page.missing(expected)} not on {url}:\n{page.text}"


def test_a_screenshot_of_the_pipeline_run_page(link: tuple[str, str, str], tmp_path: Path) -> None:
    url = link[0]
    render(url, ["test_auc"], tmp_path)  # rendered once in full: the server has warmed up
    png = tmp_path / "pipeline_run.png"
    result = _chromium(
        [
            f"--window-size={SCREEN}",
            f"--virtual-time-budget={BUDGETS[1]}",
            f"--screenshot={png}",
            url,
        ],
        tmp_path / "profile-screenshot",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    assert f"{width},{height}" == SCREEN
    assert png.stat().st_size > 50_000, "a blank page compresses to far less"
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(png, README_SCREENSHOT)
