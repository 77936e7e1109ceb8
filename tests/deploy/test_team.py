"""Team mode: two members share runs and artifacts through one `mlflow server` on PostgreSQL.

The server (PostgreSQL backend, artifacts served by the server itself) runs on 127.0.0.1. Two
separate working folders act as two people: alice fetches, checks and splits the data, bob
trains and evaluates on `data_train:latest` as the server resolves it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.local_server import free_port
from tests import tools
from tests.pipeline_runs import (
    DATA_ARTIFACTS,
    REPO,
    SMALL_FOREST,
    PipelineRun,
    mlflow_run,
    pipeline_env,
    step_runs,
)

pytestmark = pytest.mark.e2e

DATA_STEPS = "get_data,preprocess,check_data,segregate"
MODEL_STEPS = "train_random_forest,evaluate"


def _postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs (Debian keeps them off the PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    initdb = tools.need("initdb", why="start a PostgreSQL server", also=tuple(found[-1:]))
    return Path(initdb).parent


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1; yields its URI for MLflow."""
    bindir = _postgres_bin()
    # Not under pytest's tmp folder: that one is private to root, and the server may not be.
    root = Path(tempfile.mkdtemp(prefix="mgc-postgres-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as its own user
        shutil.chown(root, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(program: str, *args: str) -> None:
        done = subprocess.run(
            [*as_owner, str(bindir / program), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{program}: {done.stdout}{done.stderr}"

    pg("initdb", "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the team's server keeps the artifacts (object storage in a real deployment)."""
    return tmp_path_factory.mktemp("team_server") / "artifacts"


@pytest.fixture(scope="module")
def team_server(postgres: str, server_artifacts: Path) -> Iterator[str]:
    """`mlflow server` on PostgreSQL that stores and serves the artifacts; yields its URL."""
    root = server_artifacts.parent
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # MLflow's job runner (a process and a dozen queue consumers, for GenAI jobs, ~70 s of
    # CPU over a suite) serves nothing a pipeline does.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres,
            "--serve-artifacts",
            "--artifacts-destination",
            str(server_artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers are stopped with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def alice(
    team_server: str, tmp_path_factory: pytest.TempPathFactory, dataset_path: Path
) -> PipelineRun:
    """The first member: fetches, checks and splits the data."""
    workdir = tmp_path_factory.mktemp("alice")
    return mlflow_run(
        workdir,
        f"main.execute_steps='{DATA_STEPS}'",
        f"data.file_url={dataset_path}",
        tracking_uri=team_server,
        USER="alice",  # MLflow records the user (mlflow.user) from the login name
        LOGNAME="alice",
    ).check()


@pytest.fixture(scope="module")
def bob(
    team_server: str, tmp_path_factory: pytest.TempPathFactory, alice: PipelineRun
) -> PipelineRun:
    """The second member, in another folder: trains and evaluates on the shared data."""
    workdir = tmp_path_factory.mktemp("bob")
    return mlflow_run(
        workdir,
        f"main.execute_steps='{MODEL_STEPS}'",
        SMALL_FOREST,
        tracking_uri=team_server,
        USER="bob",  # MLflow records the user (mlflow.user) from the login name
        LOGNAME="bob",
    ).check()


def _artifacts_cli(server: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = pipeline_env(cwd, server, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "util_lib.artifacts", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_second_member_trains_on_the_first_members_data(team_server: str, bob) -> None:
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    runs = step_runs(team_server)
    assert {runs[s].info.status for s in runs} == {"FINISHED"}
    assert runs["segregate"].data.tags["mlflow.user"] == "alice"
    assert runs["train_random_forest"].data.tags["mlflow.user"] == "bob"
    # bob's pipeline read data_train:latest: the driver pinned it, on the server, to alice's
    # exact version before the step ran (step cache, util_lib/pipeline/cache.py).
    train = runs["train_random_forest"]
    assert train.data.params["train_data"] == "data_train:v0"
    assert "data_train:v0" in train.data.tags["util_lib.artifacts_used"].split(",")
    store = MlflowArtifactStore(team_server)
    data_train = store.resolve("data_train:latest")
    assert data_train.producer_run_id == runs["segregate"].info.run_id
    assert data_train.used_by == {train.info.run_id: "train_random_forest"}
    assert store.resolve("model_export:latest").producer_run_id == train.info.run_id
    assert runs["evaluate"].data.metrics["test_auc"] > 0.9


def test_artifact_list_shows_the_versions_of_both_members(team_server: str, bob) -> None:
    listing = _artifacts_cli(team_server, bob.workdir, "list")
    assert listing.returncode == 0, listing.stderr
    assert f"store: {team_server}" in listing.stdout
    for spec in (*(f"{name}:v0" for name in DATA_ARTIFACTS), "model_export:v0"):
        assert spec in listing.stdout, spec
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if ":v" in line}
    assert "segregate" in lines["data_train:v0"]  # produced by alice's run
    assert "train_random_forest" in lines["model_export:v0"]  # produced by bob's run


def test_first_member_gets_the_second_members_model(
    team_server: str, alice: PipelineRun, bob: PipelineRun
) -> None:
    got = _artifacts_cli(team_server, alice.workdir, "get", "model_export:latest", "--root", "m")
    assert got.returncode == 0, got.stderr
    assert (alice.workdir / "m" / "MLmodel").is_file()


def test_files_live_on_the_server_not_in_the_members_folders(
    team_server: str, alice: PipelineRun, bob: PipelineRun, server_artifacts: Path
) -> None:
    for member in (alice, bob):
        assert not (member.workdir / "mlruns").exists()
        assert not (member.workdir / "mlflow.db").exists()
    # util_lib_artifacts/<project>/<name>/ for data; the model is a logged model's files.
    stored = {p.name for p in server_artifacts.rglob("util_lib_artifacts/*/*")}
    assert set(DATA_ARTIFACTS) <= stored
    assert any(server_artifacts.rglob("models/*/artifacts/MLmodel"))
