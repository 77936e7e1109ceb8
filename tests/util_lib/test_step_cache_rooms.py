"""The step cache follows util_lib's rooms (util_lib/README.md): an edit of a module reruns the
steps whose process loaded it and no other, whichever room it is in (model/, step/, artifacts/,
a leaf), and an edit of the driver's room, util_lib/pipeline/, reruns no step, even when the
steps ran warm from the pipeline's fork server, whose own modules are util_lib/pipeline's.

Two real step processes on a copy of the project: evaluate (its real run.py imported, and the
exported model's code, which it loads) and get_data (its real run.py), each opening and closing
a real tracked run as a step does; a real SQLite MLflow store; the real step cache of a new
pipeline asking whether it would reuse each run (util_lib/step/provenance.py records what each
process loaded, util_lib/pipeline/cache.py checks it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.names import FORKSERVER_ENV, LOADED_FILES_TAG
from util_lib.pipeline.cache import StepCache
from util_lib.pipeline.graph import get_step
from util_lib.step.distributions import CACHE_DIR_ENV
from util_lib.step.provenance import joined_parts
from util_lib.step.trackers import get_or_create_experiment

REPO = Path(__file__).resolve().parents[2]
PROJECT = OmegaConf.load(REPO / "config.yaml").main.project_name
STEPS = ("evaluate", "get_data")
# What each step's process imports before it opens its run: its real run.py and, for evaluate,
# the exported model's code (its process loads the model, whose skops file names the
# transformers).
IMPORTS = {
    "evaluate": ["evaluate.run", "util_lib.model.pyfunc", "util_lib.model.transformers"],
    "get_data": ["get_data.run"],
}
# A step's process, run in its folder with the project root on PYTHONPATH, as MLproject does.
STEP_SCRIPT = """
import importlib, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
from util_lib.step.run import start_run
with start_run(sys.argv[1], sys.argv[1]) as run:
    print(run.run_id)
"""
# One module of each room, and the steps whose process loads it.
EDITS = {
    "model/transformers.py": {"evaluate"},
    "model/pyfunc.py": {"evaluate"},
    "step/plots.py": {"evaluate"},
    "step/run.py": {"evaluate", "get_data"},
    "artifacts/registry.py": {"evaluate"},
    "artifacts/mlflow_store.py": {"evaluate", "get_data"},
    "artifacts/lineage.py": set(),
    "redact.py": {"evaluate", "get_data"},
    "names.py": {"evaluate", "get_data"},
}
# The driver's room: what only main.py (and the fork server it starts) loads.
DRIVER_ONLY = ("pipeline/runner.py", "pipeline/forkserver.py", "pipeline/forkserver_server.py")
# The fork server's process, started as main.py starts it, from the project copy's util_lib.
DRIVER_SCRIPT = """
import sys
from util_lib.pipeline import forkserver
server = forkserver.start(["json"])
print(server.address if server else "", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def project(tracking: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's code: util_lib, the two steps (and train_random_forest), the
    pipeline's files; the runs go to the pipeline's experiment, as the steps' do."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tracking / "cache"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", PROJECT)
    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    root = tracking / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.md")
    for name in ("util_lib", *STEPS, "train_random_forest"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pipeline.yaml", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    return root


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "WANDB_PROJECT": PROJECT, **extra}


def _run_steps(root: Path, launcher: list[str] | None = None, **env: str) -> dict[str, str]:
    """Run each step's process in ``root``; remember its run under its own key; return the
    run ids. ``launcher``: the command in front of the script (default: the interpreter)."""
    script = root / "step_process.py"
    script.write_text(STEP_SCRIPT)
    runs = {}
    for step in STEPS:
        done = subprocess.run(
            [*(launcher or [sys.executable]), str(script), step, *IMPORTS[step]],
            cwd=root / step,
            env=_env(root, **env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert "starting the step cold" not in done.stderr, done.stderr[-2000:]
        runs[step] = done.stdout.split()[-1]
        _cache().remember(runs[step], f"key-{step}")
    return runs


def _cache() -> StepCache:
    """The step cache of a new pipeline (each pipeline asks what is installed afresh)."""
    from mlflow import MlflowClient

    return StepCache(MlflowClient(), get_or_create_experiment(PROJECT), MlflowArtifactStore(), None)


def _reused(root: Path) -> set[str]:
    """The steps whose remembered run a new pipeline would reuse."""
    cache = _cache()
    return {
        step
        for step in STEPS
        if cache.lookup(get_step(step), f"key-{step}", "local", (str(root / step), None))
    }


def _loaded(run_id: str) -> list[str]:
    from mlflow import MlflowClient

    return joined_parts(MlflowClient().get_run(run_id).data.tags, LOADED_FILES_TAG) or []


def _rerun_by_edit(root: Path, module: str) -> set[str]:
    """The steps an edit of ``util_lib/<module>`` reruns (the edit undone after)."""
    path = root / "util_lib" / module
    text = path.read_text()
    path.write_text(text + "\n# edited\n")
    try:
        return set(STEPS) - _reused(root)
    finally:
        path.write_text(text)


def test_an_edit_in_each_room_reruns_the_steps_that_load_it_and_no_other(
    project: Path,
) -> None:
    runs = _run_steps(project)
    assert _reused(project) == set(STEPS)
    loaded = {step: _loaded(run_id) for step, run_id in runs.items()}
    for module, steps in EDITS.items():
        assert {s for s in STEPS if f"util_lib/{module}" in loaded[s]} == steps, module
        assert _rerun_by_edit(project, module) == steps, module
        assert _reused(project) == set(STEPS), f"{module} restored"
    for step in STEPS:
        assert not [f for f in loaded[step] if f.startswith("util_lib/pipeline/")], step
    for module in DRIVER_ONLY:
        assert _rerun_by_edit(project, module) == set(), module


@pytest.fixture
def fork_server(project: Path) -> Iterator[str]:
    """The fork server of a driver running on the project copy (as main.py starts it): its
    socket, for the steps' launchers."""
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER_SCRIPT],
        cwd=project,
        env=_env(project),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = driver.stdout.readline().strip()
        if not address:
            pytest.skip("no fork server on this platform (util_lib/pipeline/forkserver.py)")
        yield address
    finally:
        driver.stdin.close()  # the driver ends, and its server with it
        driver.wait(timeout=60)


def test_steps_run_warm_from_the_fork_server_rerun_for_no_edit_of_the_driver(
    project: Path, fork_server: str
) -> None:
    """The server's process holds util_lib/pipeline's modules (it is the driver's); the step a
    child of it becomes does not count them as loaded."""
    launcher = [sys.executable, "-m", "util_lib.step.launcher"]
    runs = _run_steps(project, launcher, **{FORKSERVER_ENV: fork_server})
    assert _reused(project) == set(STEPS)
    for step, run_id in runs.items():
        loaded = _loaded(run_id)
        assert "util_lib/step/launcher.py" in loaded, step
        assert not [f for f in loaded if f.startswith("util_lib/pipeline/")], step
    for module in DRIVER_ONLY:
        assert _rerun_by_edit(project, module) == set(), module
    assert _rerun_by_edit(project, "step/launcher.py") == set(STEPS)
