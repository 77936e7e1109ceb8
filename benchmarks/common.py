"""What the benchmarks share: a fresh, isolated store and one timed `mlflow run .` on it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "dataset" / "genres_mod.parquet"  # the dataset the project ships


def isolated_env(store: Path) -> dict[str, str]:
    """The environment with tracking, W&B files and the log all kept inside ``store``.

    The caller's ``MLFLOW_*`` variables are dropped so a benchmark never writes to a real store.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}",
        WANDB_DIR=str(store),
        ML_PIPELINE_LOG=str(store / "ml_pipeline.log"),
    )
    return env


def mlflow_run(store: Path, options: str) -> tuple[float, str]:
    """Run `mlflow run . -P hydra_options=...` in ``store``; return wall seconds and stdout.

    Exits with the run's output when it fails: a benchmark of a failed run means nothing.
    """
    start = time.perf_counter()
    out = subprocess.run(
        ["mlflow", "run", str(REPO), "--env-manager", "local", "-P", f"hydra_options={options}"],
        cwd=store,
        env=isolated_env(store),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"`mlflow run` failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return seconds, out.stdout
