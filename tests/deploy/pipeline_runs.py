"""Kept so that ``tests.deploy.pipeline_runs`` still imports: the helpers are in
``tests/pipeline_runs.py`` (one for every test that runs the pipeline)."""

from tests.pipeline_runs import (  # noqa: F401
    DATA_ARTIFACTS,
    PROJECT,
    REPO,
    SMALL_FOREST,
    STEPS,
    PipelineRun,
    mlflow_run,
    pipeline_env,
    step_runs,
)
