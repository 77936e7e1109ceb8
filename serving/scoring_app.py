"""MLflow's own scoring app on a verified model folder, behind :class:`CleanErrors`.

Started by ``python -m serving serve`` as ``uvicorn --app-dir serving scoring_app:app``, with
the folder in MLflow's ``_MLFLOW_SERVER_MODEL_PATH``: the same app ``mlflow models serve``
runs (``/invocations``, ``/ping``, ``/health``, ``/version``), whose error answers carry no
stack trace and nothing of the request, and which answers a bad request with a 400, never a
500. Only ``serving/`` is put on the path, not the project: the model's own bundled code
(``code/util_lib``, checked with the other files) is what loads.
"""

from __future__ import annotations

import os

from error_bodies import CleanErrors
from mlflow.pyfunc import scoring_server


def model_names(model) -> set[str]:
    """The names a message may quote: the model's input columns and parameters."""
    metadata = model.metadata
    names: set[str] = set()
    inputs = metadata.get_input_schema()
    if inputs is not None and inputs.has_input_names():
        names.update(inputs.input_names())
    params = metadata.get_params_schema()
    if params is not None:
        names.update(param.name for param in params.params)
    return names


_model = scoring_server.load_model_with_mlflow_config(os.environ[scoring_server._SERVER_MODEL_PATH])
app = CleanErrors(scoring_server.init(_model), names=model_names(_model))
