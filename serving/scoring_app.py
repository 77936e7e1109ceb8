"""MLflow's own scoring app on a verified model folder, behind :class:`CleanErrors`.

Started by ``python -m serving serve`` as ``uvicorn --app-dir serving scoring_app:app``, with
the folder in MLflow's ``_MLFLOW_SERVER_MODEL_PATH``: the same app ``mlflow models serve``
runs (``/invocations``, ``/ping``, ``/health``, ``/version``), whose error answers carry no
stack trace. Only ``serving/`` is put on the path, not the project: the model's own bundled
code (``code/util_lib``, checked with the other files) is what loads.
"""

from __future__ import annotations

import os

from error_bodies import CleanErrors
from mlflow.pyfunc import scoring_server

app = CleanErrors(
    scoring_server.init(
        scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
    )
)
