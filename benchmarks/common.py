"""What the benchmarks share: a fresh, isolated store and one timed `mlflow run .` on it.

The isolated environment and the `mlflow run` call are the tests' (``tests/pipeline_runs.py``),
so a benchmark measures exactly what the end-to-end tests run. The benchmarks run as scripts
(``python benchmarks/<name>.py``, this folder on ``sys.path``), so the repository root is put on
``sys.path`` here to import them.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.pipeline_runs import DATASET, pipeline_env, sqlite_uri  # noqa: E402
from tests.pipeline_runs import mlflow_run as run_pipeline  # noqa: E402

DATA = DATASET  # the dataset the project ships
# The figures in docs/performance.md are taken with W&B offline (no account on the machine).
WANDB_MODE = "offline"


def isolated_env(store: Path) -> dict[str, str]:
    """The environment with tracking, W&B files, the log and temporary files inside ``store``.

    The caller's ``MLFLOW_*``, ``WANDB_*``, ``UTIL_LIB_*`` and ``PYTHONPATH`` are dropped, so
    a benchmark never writes to a real store or account.
    """
    return pipeline_env(store, sqlite_uri(store), wandb_mode=WANDB_MODE)


def mlflow_run(store: Path, options: str, **extra: str) -> tuple[float, str]:
    """Run `mlflow run . -P hydra_options=...` in ``store``; return wall seconds and stdout.

    ``extra``: environment variables of the run (``UTIL_LIB_TRACKING_SERVER="false"``).
    Exits with the run's output when it fails: a benchmark of a failed run means nothing.
    """
    # A new store and the driver's own fork server, as a user's first run has them (the tests
    # start from a migrated copy, and share one fork server between their pipelines).
    run = run_pipeline(
        store,
        options,
        wandb_mode=WANDB_MODE,
        timeout=None,
        new_store=True,
        shared_fork_server=False,
        **extra,
    )
    if run.returncode != 0:
        raise SystemExit(f"`mlflow run` failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run.seconds, run.stdout
