"""Run the pipeline: each step of ``main.execute_steps`` as an MLflow project, in order.

    mlflow run . --env-manager local
    mlflow run . --env-manager local \
        -P hydra_options="main.execute_steps='train_random_forest,evaluate'"

The Hydra entry point, and nothing else: it starts the steps' fork server, composes and
checks the configuration, and hands it to the step loop (:mod:`util_lib.pipeline.runner`).
The steps, what they read and write and where their parameters come from are declared once,
in ``pipeline.yaml`` (:mod:`util_lib.pipeline.graph`). The pipeline run returns the validation
AUC (the objective of Hydra sweepers). In a sweep (`-m`), each job is a pipeline run of its
own nested under the sweep's "multirun" run, which :mod:`util_lib.pipeline.sweep_report` (a
Hydra callback of config.yaml) opens and reports on.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from util_lib.pipeline import forkserver

if __name__ == "__main__":
    # The steps' libraries start loading now, in a process of their own
    # (util_lib/pipeline/forkserver.py), while this one imports Hydra and MLflow, checks the
    # config and opens its run; go() adds the modules of the steps the config runs. One for a
    # whole sweep run from this process (a joblib sweep's workers use it too).
    forkserver.start(wait=False)

import hydra  # noqa: E402 - after the fork server's start, on purpose
from omegaconf import DictConfig  # noqa: E402

# Importing it puts conf/ (the config groups) on Hydra's search path (before @hydra.main runs).
from util_lib.pipeline.config import check_config  # noqa: E402
from util_lib.pipeline.config_checks import ConfigError  # noqa: E402
from util_lib.pipeline.config_model import moved_key_problems  # noqa: E402
from util_lib.pipeline.runner import run_pipeline  # noqa: E402
from util_lib.pipeline.setup import warm_steps  # noqa: E402
from util_lib.step.launcher import end_with_parent  # noqa: E402


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def go(config: DictConfig) -> float | None:
    """Hydra entry point: check the configuration, then run the pipeline for it (one job of a
    sweep). A bad value exits (fails the job) before any run is opened."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_config = HydraConfig.get()
    # A sweep's jobs keep the store they were given: each job is a pipeline of its own.
    serve = hydra_config.mode != RunMode.MULTIRUN
    if serve and os.environ.get("MLFLOW_RUN_ID"):
        # Started by `mlflow run`: a stop of that process (a kill of it alone) stops the
        # pipeline too, which then ends its runs KILLED. (Not when run directly: nohup keeps
        # a pipeline going after its terminal closes. Not a sweep's jobs: a joblib worker's
        # parent is a thread of the sweep that may end before the job.)
        end_with_parent(signal.SIGTERM)
    # What the steps this config runs import, loaded by the fork server ahead of them (one is
    # started here when none runs yet, e.g. main.py imported rather than run).
    forkserver.start()
    warm_steps(config, serve)
    try:
        check_config(config)
    except ConfigError as error:
        if hydra_config.mode == RunMode.MULTIRUN:
            raise  # Hydra records the job as failed; the sweep exits non-zero
        print(f"{error}\nNo step was run.", file=sys.stderr, flush=True)
        sys.exit(1)
    return run_pipeline(config, Path(hydra_config.runtime.output_dir), serve)


def refuse_moved_keys(overrides: list[str]) -> None:
    """Exit naming the new key when the command line sets a key that moved (Hydra would refuse
    it first, without saying where it went)."""
    if problems := moved_key_problems(overrides):
        lines = "\n  ".join(problems)
        print(f"No step was run: invalid configuration:\n  {lines}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    refuse_moved_keys(sys.argv[1:])
    go()
    # Reached when the pipeline (or sweep) succeeded: end without the interpreter's teardown.
    from util_lib.step.process_exit import exit_quickly

    exit_quickly()
