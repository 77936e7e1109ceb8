"""How the driver launches one step: through ``mlflow.run`` (:func:`run_step`), reaching the
store through the tracking server the driver runs for its steps (:func:`pipeline_server`).

The step loop (:mod:`util_lib.pipeline.runner`) calls them for each step the step cache cannot
reuse.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from util_lib.pipeline.console import last_lines, log_size, steps_output_to
from util_lib.pipeline.summary import StepResult, record_result

logger = logging.getLogger("main")  # the driver's log lines, named after main.py


@contextlib.contextmanager
def pipeline_server(serve: bool, store_uri: str) -> Iterator[Callable[[], str | None]]:
    """Yield a function that gives the steps' tracking URI: a tracking server on ``store_uri``
    (a local SQLite file) that this process runs while open, started with the first step that
    runs (a pipeline whose steps all come from the cache needs none); None (the steps use the
    store) without one."""
    from util_lib.pipeline.tracking_server import start_pipeline_server

    server: Any = None
    tried = not serve

    def url() -> str | None:
        nonlocal server, tried
        if not tried:
            tried = True
            server = start_pipeline_server(store_uri)
            if server is not None:
                # MLflow prints "View run ... at <tracking URI>" as each step's run ends: links
                # to this server die with the pipeline; the summary gives the lasting one.
                os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
                logger.info(
                    "tracking server %s on %s (up in %.2f s): the steps use it",
                    server.url,
                    store_uri,
                    server.start_seconds,
                )
        return server.url if server is not None else None

    try:
        yield url
    finally:
        if server is not None:
            server.stop()


def run_step(
    result: StepResult,
    params: dict[str, Any],
    source: tuple[str, str | None],
    config: DictConfig,
    env_manager: str,
    start: float,
    tracking_uri: str | None = None,
    storage_dir: str | None = None,
    output_to: Path | None = None,
) -> None:
    """Run one step through ``mlflow.run``; record its run (FAILED when it failed) in ``result``.

    ``tracking_uri``: the step's store (the pipeline's tracking server), when not the driver's.
    ``storage_dir``: where MLflow makes the step's temporary folder (default: the system's).
    ``output_to``: the log file that gets the step's output instead of the terminal (a quiet
    pipeline); the end of it is kept in ``result.tail`` when the step fails.
    """
    import mlflow
    from mlflow.exceptions import ExecutionException

    from util_lib.step.arguments import hide_secrets

    # A URL with a password or token reaches the step through the environment only: MLflow
    # logs every parameter and prints the command line.
    params, secrets = hide_secrets(params)
    logger.info("%s: starting with %s", result.step, params)
    uri, version = source
    os.environ.update(secrets)
    store_uri = mlflow.get_tracking_uri()
    since = log_size(output_to) if output_to else 0  # where the step's output starts
    try:
        # `mlflow.run` hands its tracking URI to the step; the driver's other calls stay on
        # the store it has open (calls to a server in its own process would cost it more).
        mlflow.set_tracking_uri(tracking_uri or store_uri)
        with steps_output_to(output_to) if output_to else contextlib.nullcontext():
            submitted = mlflow.run(
                uri,
                version=version,
                entry_point="main",
                parameters=params,
                experiment_name=config.main.project_name,
                run_name=result.step,
                env_manager=env_manager,
                storage_dir=storage_dir,
                synchronous=True,
            )
        mlflow.set_tracking_uri(store_uri)
        record_result(result, mlflow.MlflowClient().get_run(submitted.run_id))
    except ExecutionException as exc:
        match = re.search(r"ID '([0-9a-f]+)'", str(exc))
        result.status, result.run_id = "FAILED", match[1] if match else "?"
        if output_to:
            result.tail = last_lines(output_to, since)
    finally:
        mlflow.set_tracking_uri(store_uri)
        result.seconds = time.monotonic() - start
        for name in secrets:
            os.environ.pop(name, None)
