"""Names of the environment variables that carry the pipeline's context to its steps.

``main.py`` sets them once per pipeline (from config.yaml) before it runs any step; every step
process, started by `mlflow run`, inherits them and reads them through the modules named below.
A step run on its own, without them, falls back to config.yaml's values.
"""

from __future__ import annotations

import os

# The log file every step appends to (main.log_file, resolved): util_lib/logs.py.
LOG_FILE_ENV = "ML_PIPELINE_LOG"
# The project the artifacts belong to (main.project_name), W&B's own variable, so that W&B
# and the embedded store agree: util_lib/store.py, util_lib/tracking.py, util_lib/lineage.py.
PROJECT_ENV = "WANDB_PROJECT"
# The W&B group of the runs (main.experiment_name): util_lib/tracking.py, util_lib/lineage.py.
GROUP_ENV = "WANDB_RUN_GROUP"
# Which artifact store (main.artifact_store: auto, wandb, mlflow): util_lib/backends.py.
ARTIFACT_STORE_ENV = "UTIL_LIB_ARTIFACT_STORE"
# The multirun run a sweep's job belongs to (set by the sweep's callback): util_lib/multirun.py.
MULTIRUN_ENV = "UTIL_LIB_MULTIRUN_RUN_ID"
# A secret-holding URL, by parameter name, so it never is an MLflow parameter:
# UTIL_LIB_SECRET_<NAME> (util_lib/arguments.py).
SECRET_ENV_PREFIX = "UTIL_LIB_SECRET_"
# Seconds between the driver's "still working" lines for a long step (default 30): main.py.
PROGRESS_ENV = "UTIL_LIB_PROGRESS_SECONDS"
# "false" turns off the tracking server the driver runs for a pipeline's steps on a local
# store (util_lib/tracking_server.py): the steps then open the store themselves. A driver-only
# setting, read before any step starts.
SERVER_ENV = "UTIL_LIB_TRACKING_SERVER"
# The pipeline's tracking server's secret, MLflow's own bearer-token variable (its REST client
# sends "Authorization: Bearer <token>"): set by util_lib/tracking_server.py for the steps while
# the server runs, never logged or recorded. A user's own value (a team server's token) makes
# the pipeline do without the server rather than overwrite it.
TRACKING_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
# MLflow's HTTP client settings that util_lib/tracking_server.py bounds for the steps while the
# pipeline serves (a user's values stand): retries, backoff between them, and a request's timeout.
HTTP_MAX_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
HTTP_BACKOFF_FACTOR_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
HTTP_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# The Unix socket of the fork server that main.py starts for a pipeline's steps (on Linux;
# "true" turns it on on macOS, "false" off everywhere): util_lib/forkserver.py, whose launcher
# is every step's MLproject command.
FORKSERVER_ENV = "UTIL_LIB_FORKSERVER"


def switched_on(name: str) -> bool:
    """False when the variable ``name`` says no (0, false, no, off); unset means yes."""
    return os.environ.get(name, "true").strip().lower() not in ("0", "false", "no", "off")
