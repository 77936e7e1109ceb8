"""Names of the MLflow run tags that more than one module reads or writes, named once.

A step run (util_lib/tracking.py) records its step, the artifact versions it used and wrote,
the store and project they belong to, and the digests of its code and parameters; the step
cache, the lineage and the sweep report read them. As it ends, a step run that succeeded also
records what it really ran on (util_lib/provenance.py): the project's source files it loaded
and their digest, its Python, and the installed distributions it loaded; the step cache
(util_lib/step_cache.py) reuses the run only while those still hold. A pipeline run (main.py)
records, for each step, the run that did its work, its own or a cached one, and how it ended.
A sweep's runs (util_lib/multirun.py) record how they belong together.
"""

from __future__ import annotations

# On a step run.
STEP_TAG = "util_lib.step"  # the step's name (pipeline.yaml)
USED_TAG = "util_lib.artifacts_used"  # name:vN,... the versions it read
WRITTEN_TAG = "util_lib.artifacts_written"  # name:vN,... the versions it wrote
STORE_TAG = "util_lib.artifact_store"  # mlflow | wandb
PROJECT_TAG = "util_lib.project"  # the project its artifacts belong to
# What the run ran (util_lib.digests): its step folder + util_lib, and its parameters (updated
# by each log_params); and the name of the step folder digested ("" when none was found).
CODE_DIGEST_TAG = "util_lib.code_digest"
CONFIG_DIGEST_TAG = "util_lib.config_digest"
CODE_DIR_TAG = "util_lib.code_dir"
CACHE_TAG = "util_lib.cache_key"  # the step cache's key of the run (util_lib/step_cache.py)
# Why a failed run failed, one line, redacted (the exception, the checks that failed): the
# driver prints it as its last line.
FAILURE_TAG = "util_lib.failure"
# What the run ran on, set as it ends (util_lib/provenance.py). Lists are comma-joined and go on
# in "<tag>.2", "<tag>.3", ... beyond MLflow's 8000 characters a value.
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
KIND_TAG = "util_lib.run_kind"
JOB_NUM_TAG = "util_lib.job_num"
OVERRIDES_TAG = "util_lib.overrides"
SWEEP_DIR_TAG = "util_lib.sweep_dir"
LAUNCHER_RUN_TAG = "util_lib.launcher_run"
MULTIRUN_RUN_TAG = "util_lib.multirun_run"
