"""One way to run the pipeline in an isolated folder: `mlflow run` as a user types it.

Everything a run writes stays in its work folder: the SQLite tracking store (and its
artifacts), W&B's files, the pipeline's log, temporary files (MLflow's clones of remote
projects) and Hydra's outputs. Nothing of the caller's environment steers it: no ``MLFLOW_*``
(another store, run or experiment), ``WANDB_*`` (an account, a mode), ``UTIL_LIB_*`` (an
artifact store, a secret) or ``PYTHONPATH`` (another checkout's modules) is inherited.

The tests import it as ``tests.pipeline_runs``; ``benchmarks/common.py`` imports it too, with
the repository root on ``sys.path``, so it needs no pytest: a failed run fails a test through
``assert`` in :meth:`PipelineRun.check`.

The tests' runs of this repository start warm (:func:`mlflow_run`'s ``shared_fork_server``):
the `mlflow run` command and the steps are children of one fork server per test process, which
has imported MLflow, W&B and the steps' libraries once, instead of importing them again in
each pipeline's `mlflow` process and fork server (a run took 12.0-13.7 s here against
17.5-18.6 s cold, idle). Everything else runs as in a user's pipeline: the `mlflow run`
command's code, the driver (its own process), the steps (pipeline.yaml's modules only, in
their own environment, folder and streams). The pipelines that copy, clone or install the
project, the benchmarks and README's commands start cold, as a user's do.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from util_lib.names import FORKSERVER_ENV
from util_lib.pipeline.graph import step_names

if TYPE_CHECKING:
    from mlflow.entities import Run

    from util_lib.artifacts.mlflow_store import MlflowArtifactStore
    from util_lib.pipeline.forkserver import ForkServer

REPO = Path(__file__).resolve().parents[1]
PROJECT = "music_genre_classification"  # config.yaml's main.project_name: the experiment
DATASET = REPO / "dataset" / "genres_mod.parquet"  # the dataset the project ships
STEPS = step_names()  # pipeline.yaml's steps, in the order they run
DATA_ARTIFACTS = ("raw_data.parquet", "preprocessed_data", "data_train", "data_test")
# Where a test is not about the model's quality, a small forest keeps it quick.
SMALL_FOREST = "model.n_estimators=20"
STEP_TAG = "util_lib.step"  # util_lib.step.run tags each step run with its step's name
# The caller's variables that would send a run elsewhere or change what it does.
NOT_INHERITED = ("MLFLOW_", "WANDB_", "UTIL_LIB_")
_RUN_DIR = re.compile(r"(^|\s)hydra\.run\.dir=")


def sqlite_uri(folder: Path) -> str:
    """The tracking URI of the SQLite store ``folder/mlflow.db`` (MLflow's default there)."""
    return f"sqlite:///{folder / 'mlflow.db'}"


_TEMPLATE: list[Path] = []


def migrated_store() -> Path:
    """An MLflow SQLite store that MLflow created and migrated, once per process.

    MLflow migrates a new SQLite store on first open (3-9 s on two cores); a copy of a migrated
    file opens at once. :func:`copy_store` copies it where a test needs a store.
    """
    if not _TEMPLATE:
        from mlflow import MlflowClient
        from mlflow.tracking._tracking_service.utils import _get_store

        folder = Path(tempfile.mkdtemp(prefix="migrated-store-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        database = folder / "mlflow.db"
        MlflowClient(sqlite_uri(folder)).search_experiments()  # creates and migrates it
        # Let go of the file before it is copied (SQLAlchemy keeps a pool of connections).
        engine = getattr(_get_store(sqlite_uri(folder)), "engine", None)
        if engine is not None:
            engine.dispose()
        _TEMPLATE.append(database)
    return _TEMPLATE[0]


def copy_store(folder: Path) -> str:
    """Copy :func:`migrated_store` to ``folder/mlflow.db``; return its tracking URI.

    The copy is MLflow's own file, schema and all; only the Default experiment's artifact
    location, which MLflow wrote as a path under the template's folder, is moved to
    ``folder/mlruns/0``, where a store created in ``folder`` keeps it.
    """
    database = folder / "mlflow.db"
    shutil.copyfile(migrated_store(), database)
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(folder / "mlruns" / "0"),),
        )
    connection.close()
    return sqlite_uri(folder)


def pipeline_env(
    workdir: Path,
    tracking_uri: str | None = None,
    *,
    wandb_mode: str = "disabled",
    **extra: str,
) -> dict[str, str]:
    """The environment of a run whose outputs (store, log, W&B, temporary files) stay in
    ``workdir``.

    Parameters
    ----------
    workdir : Path
        The run's folder.
    tracking_uri : str, optional
        ``MLFLOW_TRACKING_URI``; without it MLflow uses ``mlflow.db`` in the working directory.
    wandb_mode : str
        ``WANDB_MODE``: ``disabled`` (the default), ``offline``, or ``online``.
    **extra : str
        More variables, set last (they may replace any of the above).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    env.pop("PYTHONPATH", None)  # the steps find the project themselves
    env.update(
        WANDB_MODE=wandb_mode,
        WANDB_DIR=str(workdir),
        ML_PIPELINE_LOG=str(workdir / "ml_pipeline.log"),
        # MLflow clones remote projects into a temporary folder: keep it in the run's folder.
        TMPDIR=str(workdir),
    )
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.update(extra)
    return env


@dataclass
class PipelineRun:
    """A finished `mlflow run` of the pipeline: its folder, store, process and wall time."""

    workdir: Path
    tracking_uri: str
    result: subprocess.CompletedProcess
    seconds: float

    @property
    def returncode(self) -> int:
        return self.result.returncode

    @property
    def stdout(self) -> str:
        return self.result.stdout

    @property
    def stderr(self) -> str:
        return self.result.stderr

    def check(self) -> PipelineRun:
        """Fail (AssertionError) with the run's output when it did not succeed."""
        assert self.result.returncode == 0, (
            self.result.stdout[-4000:] + "\n" + self.result.stderr[-8000:]
        )
        return self

    def runs(self, filter_string: str = "") -> list[Run]:
        """The runs of the project's experiment in this run's store, oldest first."""
        return project_runs(self.tracking_uri, filter_string)

    def step_runs(self) -> dict[str, Run]:
        """The latest run of each step in this run's store, by step name."""
        return step_runs(self.tracking_uri)

    def store(self) -> MlflowArtifactStore:
        """The embedded artifact store on this run's tracking store."""
        from util_lib.artifacts.mlflow_store import MlflowArtifactStore

        return MlflowArtifactStore(self.tracking_uri)


def mlflow_run(
    workdir: Path,
    *overrides: str,
    uri: str | Path = REPO,
    version: str | None = None,
    env_manager: str = "local",
    tracking_uri: str | None = None,
    wandb_mode: str = "disabled",
    env: Mapping[str, str] | None = None,
    python: str | None = None,
    timeout: float | None = 1200,
    new_store: bool = False,
    shared_fork_server: bool = True,
    **extra: str,
) -> PipelineRun:
    """`mlflow run <uri> [-v version] --env-manager <m> -P hydra_options=...` in ``workdir``.

    Parameters
    ----------
    workdir : Path
        The working directory; created if missing. Hydra's outputs go to ``workdir/outputs``
        unless an override sets ``hydra.run.dir``.
    *overrides : str
        Hydra's command line (``key=value``, ``-m``, ``--config-name``), joined by spaces.
    uri, version, env_manager
        The project (this repository by default, a folder or a ``git://`` URL), its version and
        MLflow's environment manager.
    tracking_uri : str, optional
        The store; ``workdir/mlflow.db`` by default, or ``env``'s when ``env`` sets one.
    wandb_mode : str
        W&B's mode in the default environment.
    env : Mapping, optional
        The whole environment instead of :func:`pipeline_env`'s.
    python : str, optional
        Run ``<python> -m mlflow`` instead of the ``mlflow`` command (another interpreter).
    timeout : float, optional
        Seconds before the run is killed (``subprocess.TimeoutExpired``); None waits.
    new_store : bool
        Let MLflow create and migrate ``workdir/mlflow.db``, as a user's first run does. By
        default a store that does not exist there yet is a copy of :func:`migrated_store`.
    shared_fork_server : bool
        Run the `mlflow run` command and the steps as children of this process's fork server
        (:func:`_shared_fork_server`) when the run is of this repository with ``--env-manager
        local`` and the environment names no fork server; False runs the `mlflow` command and
        lets the driver start its own server, as a user's run does.
    **extra : str
        Environment variables on top of the environment.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or (env or {}).get("MLFLOW_TRACKING_URI") or sqlite_uri(workdir)
    if (
        not new_store
        and tracking_uri == sqlite_uri(workdir)
        and not (workdir / "mlflow.db").exists()
    ):
        copy_store(workdir)
    if env is None:
        env = pipeline_env(workdir, tracking_uri, wandb_mode=wandb_mode)
    environment = {**env, **extra}
    if shared_fork_server and Path(uri) == REPO and env_manager == "local" and python is None:
        command = warm_mlflow(environment)
    else:
        command = [python, "-m", "mlflow"] if python else ["mlflow"]
    options = " ".join(overrides)
    if not _RUN_DIR.search(options):
        options = _with_override(options, f"hydra.run.dir={workdir / 'outputs'}")
    command += ["run", str(uri), "--env-manager", env_manager]
    if version:
        command += ["--version", version]
    command += ["-P", f"hydra_options={options}"]
    start = time.perf_counter()
    result = subprocess.run(
        command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=timeout
    )
    return PipelineRun(workdir, tracking_uri, result, time.perf_counter() - start)


# This process's shared fork server, the last one started; None where none can run (macOS,
# Windows: the runs start cold, and the reason is said once).
_FORK_SERVERS: list[ForkServer | None] = []
# `mlflow ARGS` through a step's launcher (util_lib/step/launcher.py): a child of the shared
# fork server, which has imported MLflow's command and store, runs `python -m mlflow ARGS` with
# this process's arguments, environment, folder and standard streams, and its exit code.
_LAUNCH_MLFLOW = (
    f"import sys; sys.path.insert(1, {str(REPO)!r}); "
    "from util_lib.step.launcher import main; main(['-m', 'mlflow', *sys.argv[1:]])"
)


def warm_mlflow(environment: dict[str, str]) -> list[str]:
    """The `mlflow` command for a run of this repository's pipeline or steps with
    ``--env-manager local`` in ``environment``: a child of this process's fork server
    (:func:`_shared_fork_server`), whose address it adds to ``environment``; the `mlflow`
    command itself where no server runs or ``environment`` names one already."""
    if FORKSERVER_ENV in environment:
        return ["mlflow"]
    address = _shared_fork_server()
    if not address:
        return ["mlflow"]
    environment[FORKSERVER_ENV] = address
    return [sys.executable, "-c", _LAUNCH_MLFLOW]


def _shared_fork_server() -> str | None:
    """The address of this process's fork server for the pipelines it runs of this
    repository, started on first use (again if it ended); None where none can run.

    A pipeline's driver starts a fork server (util_lib/pipeline/forkserver.py) that imports
    MLflow, W&B, pandas and the steps' libraries before its first step, and the `mlflow run`
    command imports MLflow's command and store: about 6 s and 4.7 s of CPU on two cores, for
    each of the 60-odd pipelines the tests run. Given a server's address in
    ``UTIL_LIB_FORKSERVER`` the driver uses that one, as a sweep's jobs share their parent's;
    its steps still fork from a server that imported only what pipeline.yaml declares (and
    MLflow's command), each in its own launcher's environment, folder and standard streams. The
    server starts without the variables a pipeline's environment leaves out, and ends with this
    process.
    """
    from util_lib.pipeline import forkserver

    if _FORK_SERVERS and _FORK_SERVERS[-1] is None:
        return None
    if _FORK_SERVERS and _FORK_SERVERS[-1].process.poll() is None:
        return _FORK_SERVERS[-1].address
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(NOT_INHERITED)]:
            del os.environ[name]
        server = forkserver.start()  # sets UTIL_LIB_FORKSERVER here, undone below
        if server is not None:  # for the `mlflow run` commands (_LAUNCH_MLFLOW)
            forkserver.warm(["mlflow.cli", forkserver.STORE_MODULE])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    _FORK_SERVERS.append(server)
    return server.address if server is not None else None


def _with_override(options: str, override: str) -> str:
    """``options`` with ``override`` beside its other overrides: Hydra's parser (argparse)
    takes the overrides as one run of words, none after a flag such as ``-m`` that follows
    them, and none before a ``--config-name`` that precedes them."""
    words = options.split()
    first = next((i for i, w in enumerate(words) if "=" in w and not w.startswith("-")), len(words))
    return " ".join([*words[:first], override, *words[first:]])


def project_runs(tracking_uri: str, filter_string: str = "") -> list[Run]:
    """The runs of the project's experiment (steps, pipelines, multiruns), oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(PROJECT)
    assert experiment is not None, f"no experiment {PROJECT!r} in {tracking_uri}"
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=filter_string,
        order_by=["attributes.start_time ASC"],
        max_results=1000,
    )


def step_runs(tracking_uri: str) -> dict[str, Run]:
    """The latest run of each step in the project's experiment, by step name (run order)."""
    return {r.data.tags[STEP_TAG]: r for r in project_runs(tracking_uri) if STEP_TAG in r.data.tags}
