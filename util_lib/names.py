"""The names that carry the pipeline's state across processes, named once: the MLflow tags
that more than one module reads or writes, and the environment variables of the pipeline's
context. Their strings are what existing stores and running steps hold: never change one.

Tags. A step run (:mod:`util_lib.step.run`) records its step, the artifact versions it used and
wrote, the store and project they belong to, and the digests of its code and parameters; the
step cache, the lineage and the sweep report read them. As it ends, a step run that succeeded
also records what it really ran on (:mod:`util_lib.step.provenance`): the project's source
files it loaded and their digest, its Python, and the installed distributions it loaded; the
step cache (:mod:`util_lib.pipeline.cache`) reuses the run only while those still hold. A
pipeline run (:mod:`util_lib.pipeline.runner`) records, for each step, the run that did its
work, its own or a cached one, and how it ended. A sweep's runs
(:mod:`util_lib.pipeline.multirun`) record how they belong together. The embedded artifact
store (:mod:`util_lib.artifacts.mlflow_store`) keeps an artifact and each of its versions in
MLflow's Model Registry, described by tags.

Environment variables. The driver (main.py) sets them once per pipeline (from config.yaml)
before it runs any step; every step process, started by `mlflow run`, inherits them and reads
them through the modules named below. A step run on its own, without them, falls back to
config.yaml's values.
"""

from __future__ import annotations

import os
from pathlib import Path

# The project's root, the folder of config.yaml, pipeline.yaml and the step folders.
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------- run tags
# On a step run.
STEP_TAG = "util_lib.step"  # the step's name (pipeline.yaml)
USED_TAG = "util_lib.artifacts_used"  # name:vN,... the versions it read
WRITTEN_TAG = "util_lib.artifacts_written"  # name:vN,... the versions it wrote
STORE_TAG = "util_lib.artifact_store"  # mlflow | wandb
PROJECT_TAG = "util_lib.project"  # the project its artifacts belong to (as on an artifact)
# What the run ran (util_lib.artifacts.digests): its step folder + util_lib, and its parameters
# (updated by each log_params); and the name of the step folder digested ("" when none was found).
CODE_DIGEST_TAG = "util_lib.code_digest"
CONFIG_DIGEST_TAG = "util_lib.config_digest"
CODE_DIR_TAG = "util_lib.code_dir"
CACHE_TAG = "util_lib.cache_key"  # the step cache's key of the run (util_lib/pipeline/cache.py)
# Why a failed run failed, one line, redacted (the exception, the checks that failed): the
# driver prints it as its last line.
FAILURE_TAG = "util_lib.failure"
# What the run ran on, set as it ends (util_lib/step/provenance.py). Lists are comma-joined and go
# on in "<tag>.2", "<tag>.3", ... beyond MLflow's 8000 characters a value.
LOADED_FILES_TAG = "util_lib.loaded_files"  # source files loaded: project-relative (or absolute)
LOADED_DIGEST_TAG = "util_lib.loaded_files_digest"  # manifest digest of (path, sha256) of those
PYTHON_TAG = "util_lib.python"  # implementation and version: cpython 3.11.7
DISTRIBUTIONS_TAG = "util_lib.distributions"  # name==version of the distributions loaded
INSTALLED_TAG = "util_lib.installed"  # fingerprint of the distributions installed on sys.path

# On a pipeline run.
STEP_RUN_PREFIX = "util_lib.step_run."  # + step name: the run id
STEP_STATUS_PREFIX = "util_lib.step_status."  # + step name: FINISHED, CACHED or FAILED

# On a sweep's runs: the multirun run, its jobs' pipeline runs and the launcher's run.
MULTIRUN_TAG = "util_lib.multirun"  # on a job's pipeline run: the multirun run's id
RUN_KIND_TAG = "util_lib.run_kind"
JOB_NUM_TAG = "util_lib.job_num"
OVERRIDES_TAG = "util_lib.overrides"
SWEEP_DIR_TAG = "util_lib.sweep_dir"
LAUNCHER_RUN_TAG = "util_lib.launcher_run"
MULTIRUN_RUN_TAG = "util_lib.multirun_run"

# ------------------------------------------------------------------------ artifact tags
# On an artifact's registered model and on its versions (util_lib/artifacts/mlflow_store.py);
# PROJECT_TAG above names an artifact's project too.
KIND_TAG = "util_lib.kind"  # "artifact": a registered model the store manages
TYPE_TAG = "util_lib.type"
STATE_TAG = "util_lib.state"  # pending | committed
DIGEST_TAG = "util_lib.digest"
FILES_TAG = "util_lib.files"
METADATA_TAG = "util_lib.metadata"
NAME_TAG = "util_lib.name"
# On an artifact's registered model, for whoever reads the registry page or its tags.
NOTE_TAG = "util_lib.note"
ARTIFACT_NOTE = "pipeline artifact, not a model"
# The last data check of a version (check_data records it): passed | failed, and its run.
CHECK_TAG = "util_lib.check"
CHECK_RUN_TAG = "util_lib.check_run"
USED_BY_PREFIX = "util_lib.used_by."  # + run id: the step of a run that used the version
# Set when a version's files were found not to match their digests: what is wrong with them.
DAMAGED_TAG = "util_lib.damaged"

# ------------------------------------------------------------------ environment variables
# The log file every step appends to (main.log_file, resolved): util_lib/step/logs.py.
LOG_FILE_ENV = "ML_PIPELINE_LOG"
# The project the artifacts belong to (main.project_name), W&B's own variable, so that W&B
# and the embedded store agree: util_lib/artifacts/mlflow_store.py, util_lib/step/run.py,
# util_lib/artifacts/lineage.py.
PROJECT_ENV = "WANDB_PROJECT"
# The W&B group of the runs (main.experiment_name): util_lib/step/run.py,
# util_lib/artifacts/lineage.py.
GROUP_ENV = "WANDB_RUN_GROUP"
# Which artifact store (main.artifact_store: auto, wandb, mlflow): util_lib/artifacts/backends.py.
ARTIFACT_STORE_ENV = "UTIL_LIB_ARTIFACT_STORE"
# The multirun run a sweep's job belongs to (set by the sweep's callback):
# util_lib/pipeline/multirun.py.
MULTIRUN_ENV = "UTIL_LIB_MULTIRUN_RUN_ID"
# A secret-holding URL, by parameter name, so it never is an MLflow parameter:
# UTIL_LIB_SECRET_<NAME> (util_lib/step/arguments.py).
SECRET_ENV_PREFIX = "UTIL_LIB_SECRET_"
# Seconds between the driver's "still working" lines for a long step (default 30): main.py.
PROGRESS_ENV = "UTIL_LIB_PROGRESS_SECONDS"
# "false" turns off the tracking server the driver runs for a pipeline's steps on a local
# store (util_lib/pipeline/tracking_server.py): the steps then open the store themselves. A
# driver-only setting, read before any step starts.
SERVER_ENV = "UTIL_LIB_TRACKING_SERVER"
# The pipeline's tracking server's secret, MLflow's own bearer-token variable (its REST client
# sends "Authorization: Bearer <token>"): set by util_lib/pipeline/tracking_server.py for the steps
# while the server runs, never logged or recorded. A user's own value (a team server's token) makes
# the pipeline do without the server rather than overwrite it.
TRACKING_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
# MLflow's HTTP client settings that util_lib/pipeline/tracking_server.py bounds for the steps while
# the pipeline serves (a user's values stand): retries, backoff between them, and a request's
# timeout.
HTTP_MAX_RETRIES_ENV = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
HTTP_BACKOFF_FACTOR_ENV = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
HTTP_TIMEOUT_ENV = "MLFLOW_HTTP_REQUEST_TIMEOUT"
# The Unix socket of the fork server that main.py starts for a pipeline's steps (on Linux;
# "true" turns it on on macOS, "false" off everywhere): util_lib/pipeline/forkserver.py; every
# step's MLproject command, util_lib/step/launcher.py, reads it.
FORKSERVER_ENV = "UTIL_LIB_FORKSERVER"


def switched_on(name: str) -> bool:
    """False when the variable ``name`` says no (0, false, no, off); unset means yes."""
    return os.environ.get(name, "true").strip().lower() not in ("0", "false", "no", "off")
