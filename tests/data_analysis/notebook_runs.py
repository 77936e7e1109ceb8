"""Helpers of the notebook tests: the environment the notebooks run in, and what they tracked.

The fixtures that fill a store and execute the notebooks are in ``conftest.py``; the tests read
the runs the notebooks tracked there through these helpers.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import nbformat
from mlflow import MlflowClient

from tests.pipeline_runs import REPO, pipeline_env, project_runs, sqlite_uri

SANDBOX = REPO / "data_analysis"
# In this order: as a person runs them. Each notebook's tracked run, by its step name.
NOTEBOOK_STEPS = {
    "EDA_Tracking.ipynb": "eda",
    "Modeling.ipynb": "modeling",
    "UnsupervisedLearning.ipynb": "clustering",
}
NOTEBOOKS = tuple(NOTEBOOK_STEPS)


def notebook_env(workdir: Path, wandb_mode: str) -> dict[str, str]:
    """A pipeline run's environment (tests/pipeline_runs.py) on ``workdir``'s store, with
    Jupyter's own settings in ``workdir`` too."""
    env = pipeline_env(workdir, sqlite_uri(workdir), wandb_mode=wandb_mode)
    env = {k: v for k, v in env.items() if not k.startswith("JUPYTER_")}
    env.update(
        # Jupyter's connection files, server info and config stay in the test's folder.
        JUPYTER_RUNTIME_DIR=str(workdir / "jupyter_runtime"),
        JUPYTER_CONFIG_DIR=str(workdir / "jupyter_config"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    return env


def tracked_run(store: Path, step: str) -> mlflow.entities.Run:
    """The one run of ``step`` (tag ``util_lib.step``) in the pipeline's experiment."""
    runs = project_runs(sqlite_uri(store), f"tags.`util_lib.step` = '{step}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def artifact_paths(store: Path, run_id: str, folder: str = "") -> list[str]:
    """The paths of a run's artifacts at the top or in ``folder``."""
    client = MlflowClient(sqlite_uri(store))
    return [a.path for a in client.list_artifacts(run_id, folder or None)]


def download(store: Path, run_id: str, path: str, dst: Path) -> Path:
    """Download one of a run's artifacts into ``dst``; return its local path."""
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=sqlite_uri(store)
    )
    return Path(local)


def stdout(cells: list[nbformat.NotebookNode]) -> str:
    """What the code cells printed (their stdout streams), in order."""
    return "".join(
        output.get("text", "")
        for cell in cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )
