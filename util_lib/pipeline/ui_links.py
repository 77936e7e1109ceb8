"""Links into MLflow's UI that land on the right page.

MLflow 3's UI opens an experiment in its GenAI view (traces) unless the URL asks for the
model-training view (``?workflowType=machine_learning``), where the runs, their datasets and
logged models are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from util_lib.redact import redact_url

if TYPE_CHECKING:
    from util_lib.pipeline.multirun import JobContext

# Where `mlflow ui` serves by default.
LOCAL_UI = "http://127.0.0.1:5000"
_VIEW = "workflowType=machine_learning"


def run_page(tracking_uri: str, experiment_id: str, run_id: str) -> tuple[str, str | None]:
    """The page of a run in the model-training view, and the command that serves it.

    Parameters
    ----------
    tracking_uri : str
        The tracking store: a server (``http(s)://``, whose own UI is linked) or a local store
        (served by ``mlflow ui --backend-store-uri <store>`` on port 5000).
    experiment_id, run_id : str
        The run.

    Returns
    -------
    (str, str or None)
        The URL (credentials masked), and the ``mlflow ui`` command (None for a server).
    """
    if tracking_uri.startswith(("http://", "https://")):
        base, command = redact_url(tracking_uri).rstrip("/"), None
    else:
        base = LOCAL_UI
        command = f"mlflow ui --backend-store-uri {redact_url(tracking_uri)}"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{_VIEW}", command


def multirun_link(context: JobContext) -> str:
    """Where a sweep is in MLflow's UI: its multirun run's page in the model-training view,
    as the sweep report prints it."""
    url, command = run_page(context.tracking_uri, context.experiment_id, context.run_id)
    if command:
        return f"MLflow UI:   {command}\n             then open {url}"
    return f"MLflow UI:   {url}"
