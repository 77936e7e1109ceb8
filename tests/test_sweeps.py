"""Sweeps through `mlflow run . -m`: sequential and parallel grids, Optuna, grid search, Ray.

One data-preparing run (get_data, preprocess, check_data, segregate) on a fresh SQLite store is
shared by the module; every sweep then trains (and evaluates) small forests on that data, as
users tune after a first full run. Each sweep writes into its own folder of the module's work
folder.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from serving.local_server import free_port
from tests import tools
from tests.pipeline_runs import REPO, mlflow_run, pipeline_env, project_runs, sqlite_uri
from util_lib.names import STEP_RUN_PREFIX, STEP_STATUS_PREFIX

SMALL = "model.n_estimators=10"
TRAIN_EVALUATE = "main.execute_steps='train_random_forest,evaluate'"
DEPTH = "model.max_depth"
TERMS = "random_forest_pipeline.tfidf.max_features"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sweeps")


@pytest.fixture(scope="module")
def prepared(workdir: Path, dataset_path: Path) -> Path:
    """The store after one run of the data steps: data_train:v0 and data_test:v0."""
    mlflow_run(
        workdir,
        f"data.file_url={dataset_path}",
        "main.execute_steps='get_data,preprocess,check_data,segregate'",
    ).check()
    return workdir


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(sqlite_uri(workdir))


def _store(workdir: Path):
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    return MlflowArtifactStore(sqlite_uri(workdir))


def _runs(workdir: Path, filter_string: str) -> list[Run]:
    return project_runs(sqlite_uri(workdir), filter_string)


def _report(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "sweep_report.csv").open() as stream:
        return list(csv.DictReader(stream))


def _model(train: Run) -> str:
    """The model version a train run wrote."""
    (model,) = re.findall(r"model_export:v\d+", train.data.tags["util_lib.artifacts_written"])
    return model


def check_sweep(workdir: Path, sweep_dir: Path, jobs: int, steps: tuple[str, ...]) -> dict:
    """What every sweep must leave behind; returns {job number: (pipeline run, step runs)}.

    One FINISHED multirun run holding the report; under it one pipeline run per job naming
    each step's FINISHED run (its own child, or the earlier run a CACHED step reused); as many
    distinct model_export versions as jobs, each evaluated by its own job; each job's model
    config in its own folder; one report row per job.
    """
    (multirun,) = _runs(workdir, f"tags.`util_lib.sweep_dir` = '{sweep_dir}'")
    assert multirun.info.status == "FINISHED"
    logged = {a.path for a in _client(workdir).list_artifacts(multirun.info.run_id, "sweep_report")}
    assert {"sweep_report/sweep_report.csv", "sweep_report/sweep_report.png"} <= logged

    pipelines = _runs(workdir, f"tags.`util_lib.multirun` = '{multirun.info.run_id}'")
    assert len(pipelines) == jobs
    found = {}
    for pipeline in pipelines:
        assert pipeline.info.status == "FINISHED"
        assert pipeline.data.tags["mlflow.parentRunId"] == multirun.info.run_id
        # Each step's run: the job's own child run, or (CACHED) the earlier run it reused.
        tags = pipeline.data.tags
        by_step = {step: _client(workdir).get_run(tags[STEP_RUN_PREFIX + step]) for step in steps}
        for step, run in by_step.items():
            assert run.info.status == "FINISHED"
            assert run.data.tags["util_lib.step"] == step
            status = tags[STEP_STATUS_PREFIX + step]
            assert status in ("FINISHED", "CACHED"), (step, status)
            own = run.data.tags["mlflow.parentRunId"] == pipeline.info.run_id
            assert own == (status == "FINISHED"), (step, status)
        children = _runs(workdir, f"tags.`mlflow.parentRunId` = '{pipeline.info.run_id}'")
        assert {r.data.tags["util_lib.step"] for r in children} <= set(steps)
        found[int(pipeline.data.tags["util_lib.job_num"])] = (pipeline, by_step)
    assert sorted(found) == list(range(jobs))

    versions = [_model(steps["train_random_forest"]) for _, steps in found.values()]
    assert len(set(versions)) == jobs
    for num, (pipeline, by_step) in found.items():
        model = _model(by_step["train_random_forest"])
        if "evaluate" in by_step:
            assert model in by_step["evaluate"].data.tags["util_lib.artifacts_used"].split(",")
        model_file = yaml.safe_load((sweep_dir / str(num) / "model.yaml").read_text())
        overrides = dict(
            o.split("=", 1) for o in json.loads(pipeline.data.tags["util_lib.overrides"])
        )
        if DEPTH in overrides:
            assert str(model_file["max_depth"]) == overrides[DEPTH]

    rows = _report(sweep_dir)
    assert [int(r["job"]) for r in rows] == list(range(jobs))
    for row in rows:
        pipeline, by_step = found[int(row["job"])]
        assert row["model_export"] == _model(by_step["train_random_forest"])
        assert float(row["val_auc"]) == pytest.approx(pipeline.data.metrics["val_auc"])
        assert float(row["fit_seconds"]) > 0
    assert (sweep_dir / "sweep_report.png").read_bytes()[:4] == b"\x89PNG"
    return found


def test_sequential_sweep_groups_reports_and_names_the_best(prepared: Path) -> None:
    # Two jobs, one per model family (config group model): the fewest that have a best one.
    # (No SMALL: n_estimators is no argument of LogisticRegression.)
    sweep_dir = prepared / "sequential"
    result = mlflow_run(
        prepared,
        "main.execute_steps=train_random_forest model=random_forest,logistic_regression "
        f"hydra.sweep.dir={sweep_dir} -m",
    ).check()
    found = check_sweep(prepared, sweep_dir, 2, ("train_random_forest",))

    rows = _report(sweep_dir)
    assert [r["model"] for r in rows] == ["random_forest", "logistic_regression"]
    assert [r["test_auc"] for r in rows] == [""] * 2  # evaluate did not run
    best = max(rows, key=lambda r: float(r["val_auc"]))
    assert f"Best job: #{best['job']} (model={best['model']})" in result.stdout
    (command,) = re.findall(r"Promote it:\s+(.+)", result.stdout)
    model = best["model_export"]
    assert command.endswith(f"python -m util_lib.artifacts alias {model} prod --store mlflow")
    # `mlflow run .` made its own run in the Default experiment; it points at the multirun run.
    multirun = found[0][0].data.tags["util_lib.multirun"]
    client = _client(prepared)
    launchers = client.search_runs(
        [client.get_experiment_by_name("Default").experiment_id],
        filter_string=f"tags.`util_lib.multirun_run` = '{multirun}'",
    )
    assert len(launchers) == 1

    # The printed command promotes the best model.
    env = pipeline_env(prepared, sqlite_uri(prepared))
    subprocess.run(command, shell=True, cwd=REPO, env=env, check=True, timeout=300)
    assert _store(prepared).resolve("model_export:prod").spec == best["model_export"]


def test_sweep_yaml_grid_names_keys_of_the_config() -> None:
    """sweep.yaml extends config.yaml, and each key it sweeps is one the composed
    configuration has (config.yaml and the model group's default file)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import util_lib.pipeline.config  # noqa: F401 - conf/ on the search path

    sweep = OmegaConf.load(REPO / "sweep.yaml")
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        config = compose(config_name="config")
    assert list(sweep.defaults) == ["config", "_self_"]
    assert list(sweep.main.execute_steps) == ["train_random_forest", "evaluate"]
    grid = sweep.hydra.sweeper.params
    assert grid, "sweep.yaml sweeps nothing"
    for key in grid:
        assert OmegaConf.select(config, key, default="missing") != "missing", key


def test_sweep_grid_from_a_config_file(prepared: Path, tmp_path: Path) -> None:
    """`--config-name ... -m` with the grid in hydra.sweeper.params, none on the command line.

    The test's config file extends the shipped sweep.yaml and shrinks each of its grids, so the
    sweep has 2 jobs; without the file's grids Hydra would run 1 job (or sweep.yaml's 6).
    """
    leaf = "model.min_samples_leaf"
    shipped = yaml.safe_load((REPO / "sweep.yaml").read_text())["hydra"]["sweeper"]["params"]
    assert set(shipped) == {DEPTH, TERMS}, "this test shrinks each grid of sweep.yaml"
    grid = {DEPTH: "4,8", TERMS: "5", leaf: "3"}
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "small_sweep.yaml").write_text(
        yaml.safe_dump({"defaults": ["sweep", "_self_"], "hydra": {"sweeper": {"params": grid}}})
    )
    sweep_dir = prepared / "config_file"
    mlflow_run(
        prepared,
        f"--config-dir {config_dir} --config-name small_sweep {SMALL} "
        f"hydra.sweep.dir={sweep_dir} -m",
    ).check()
    # sweep.yaml's steps, the file's grid: one job per value of max_depth.
    found = check_sweep(prepared, sweep_dir, 2, ("train_random_forest", "evaluate"))
    rows = _report(sweep_dir)
    assert [r[DEPTH] for r in rows] == ["4", "8"]
    for row in rows:
        assert f"{TERMS}=5" in row["overrides"].split() and f"{leaf}=3" in row["overrides"]
        assert 0.5 < float(row["test_auc"]) < 1
    for num in found:
        config = yaml.safe_load((sweep_dir / str(num) / "random_forest_pipeline.yaml").read_text())
        model_file = yaml.safe_load((sweep_dir / str(num) / "model.yaml").read_text())
        assert model_file["max_depth"] == [4, 8][num]
        assert model_file["min_samples_leaf"] == 3
        assert config["tfidf"]["max_features"] == 5


def test_parallel_joblib_sweep_keeps_jobs_apart(prepared: Path) -> None:
    # Two jobs at once (joblib's two workers): the fewest that can get mixed up.
    sweep_dir = prepared / "joblib"
    wandb_dir = prepared / "wandb_joblib"
    wandb_dir.mkdir()
    mlflow_run(
        prepared,
        # No step cache: every step of every job runs, so each is a W&B run of its own.
        f"hydra/launcher=joblib {TRAIN_EVALUATE} {SMALL} main.experiment_name=sweep_joblib "
        f"main.cache=false {DEPTH}=5,10 {TERMS}=5 hydra.sweep.dir={sweep_dir} -m",
        wandb_mode="offline",
        WANDB_DIR=str(wandb_dir),
    ).check()
    found = check_sweep(prepared, sweep_dir, 2, ("train_random_forest", "evaluate"))

    rows = _report(sweep_dir)
    assert all(0.8 < float(r["test_auc"]) < 1 for r in rows)
    assert sorted(r[DEPTH] for r in rows) == ["10", "5"]
    assert all(f"{TERMS}=5" in r["overrides"].split() for r in rows)
    # Each step of each job is a W&B run of its own, in group main.experiment_name, and so is
    # each job's lineage picture (util_lib.artifacts.lineage), which names the job's pipeline run.
    step_runs = {r.info.run_id for _, steps in found.values() for r in steps.values()}
    pipelines = {pipeline.info.run_id for pipeline, _ in found.values()}
    records = [p.read_bytes() for p in (wandb_dir / "wandb").glob("offline-run-*/*.wandb")]
    assert len(step_runs) == 4 and len(pipelines) == 2
    assert len(records) == len(step_runs) + len(pipelines)
    assert all(b"sweep_joblib" in record for record in records)
    # Each W&B run names its own MLflow run in its config (the console output it keeps may
    # mention other runs, e.g. in a path).
    owners = [
        {m.decode() for m in re.findall(rb"mlflow_run_id.{1,12}?([0-9a-f]{32})", r, re.S)}
        for r in records
    ]
    assert all(len(o) == 1 for o in owners) and set.union(*owners) == step_runs | pipelines


def test_optuna_sweep_is_repeatable_with_its_seed(prepared: Path) -> None:
    results = []
    for attempt in ("optuna_1", "optuna_2"):
        sweep_dir = prepared / attempt
        # Two trials, asked for at once and run in parallel: the fewest that have a best one
        # and can come back in another order.
        mlflow_run(
            prepared,
            "--config-name optuna hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=2 "
            "hydra/launcher=joblib hydra.launcher.n_jobs=2 "
            # No step cache: the second attempt must train again to show it is repeatable.
            f"main.execute_steps=train_random_forest {SMALL} main.cache=false "
            f"hydra.sweep.dir={sweep_dir} -m",
        ).check()
        check_sweep(prepared, sweep_dir, 2, ("train_random_forest",))
        rows = _report(sweep_dir)
        optimum = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
        best = max(rows, key=lambda r: float(r["val_auc"]))
        assert optimum["best_value"] == pytest.approx(float(best["val_auc"]))
        assert all(f"{k}={v}" in best["overrides"] for k, v in optimum["best_params"].items())
        results.append([(r["overrides"], r["val_auc"]) for r in rows])
    assert results[0] == results[1]
    assert len({overrides for overrides, _ in results[0]}) == 2


def test_grid_search_exports_the_best_estimator(prepared: Path) -> None:
    from util_lib.model.pyfunc import load_pipeline

    grid = "{param_grid:{classifier__max_depth:[2,12]},cv:2,scoring:roc_auc_ovo}"
    result = mlflow_run(
        prepared,
        f"main.execute_steps=train_random_forest {SMALL} "
        f"random_forest_pipeline.grid_search={grid} hydra.run.dir={prepared / 'grid'}",
    ).check()
    # The summary table (printed, and logged to stdout by Hydra's logging too).
    (spec,) = set(
        re.findall(r"train_random_forest\s+FINISHED\s+[\d.]+\s+(model_export:v\d+)", result.stdout)
    )
    (train,) = _runs(prepared, f"tags.`util_lib.artifacts_written` = '{spec}'")
    assert train.data.params["grid_search.best_params.classifier__max_depth"] == "12"
    assert 0.8 < train.data.metrics["cv_score"] < 1
    client = _client(prepared)
    table = Path(
        client.download_artifacts(train.info.run_id, "grid_search_results.csv", str(prepared))
    )
    assert len(table.read_text().strip().splitlines()) == 1 + 2

    store = _store(prepared)
    version = store.resolve(spec)
    assert version.metadata["model_config"]["grid_search_best_params"] == {
        "classifier__max_depth": 12
    }
    model = load_pipeline(str(store.download(version, prepared / "grid_model")))
    assert model.named_steps["classifier"].max_depth == 12


# ------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with requirements-ray.txt on top of the installed requirements.

    README's second recipe (``venv --system-site-packages``, then requirements-ray.txt) with
    the tests' interpreter's packages in the system's place, which are the installed
    requirements also when that interpreter is itself a virtual environment's (CI's): a .pth
    file names its site-packages after the new environment's own. pip then installs only what
    requirements-ray.txt adds or pins otherwise (its cloudpickle and joblib shadow those).
    """
    tools.need_package_index()
    venv = tmp_path_factory.mktemp("ray") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    own = subprocess.run(
        [str(venv / "bin" / "python"), "-c", purelib],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (Path(own) / "installed_requirements.pth").write_text("\n".join(site.getsitepackages()))
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + ["-r", str(REPO / "requirements-ray.txt")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    return venv


# What Ray prints when its own processes did not come up in time: on a loaded machine (seen
# with four test processes on the two cores) its node waits out a deadline; started again, it
# comes up. Any other end of `ray start` fails the test at once.
RAY_STARTUP_TIMEOUT = "The current node timed out during startup"


def _ray_head(ray_venv: Path, path: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
    """`ray start --head --block` on free ports; returns the process, its port and temp folder."""
    temp = Path(f"/tmp/ray_{os.getpid()}_{free_port()}")  # short: Ray puts sockets in it
    port = free_port()
    ports = {
        "--port": port,
        "--ray-client-server-port": free_port(),
        "--dashboard-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    with temp.with_suffix(".log").open("w") as stream:
        head = subprocess.Popen(
            [str(ray_venv / "bin" / "ray"), "start", "--head", "--block", "--num-cpus=2"]
            + ["--node-ip-address=127.0.0.1", "--include-dashboard=false"]
            + ["--disable-usage-stats", f"--temp-dir={temp}"]
            + [f"{flag}={value}" for flag, value in ports.items()],
            env={**os.environ, **path},
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    return head, port, temp


def _stop_ray_head(head: subprocess.Popen, temp: Path) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            break
        try:
            head.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    # Ray's processes share the group; make sure none outlives the test.
    for _ in range(20):
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    shutil.rmtree(temp, ignore_errors=True)
    temp.with_suffix(".log").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ray_cluster(ray_venv: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A local Ray head node (`ray start --head --block`); yields its address and PATH; stopped.

    Started a second time only when Ray says its own startup timed out
    (:data:`RAY_STARTUP_TIMEOUT`)."""
    path = {"PATH": f"{ray_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for attempt in (1, 2):
        head, port, temp = _ray_head(ray_venv, path)
        log = temp.with_suffix(".log")
        try:
            deadline = time.monotonic() + 180
            while "Ray runtime started" not in log.read_text():
                ended = head.poll() is not None
                if ended and attempt == 1 and RAY_STARTUP_TIMEOUT in log.read_text():
                    break  # started again below
                assert head.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(1)
            else:
                yield f"127.0.0.1:{port}", path
                return
        finally:
            _stop_ray_head(head, temp)


@pytest.mark.package_index  # ray_venv pip-installs requirements-ray.txt
def test_ray_sweep_on_a_local_ray_instance(
    prepared: Path, ray_venv: Path, ray_cluster: tuple[str, dict[str, str]]
) -> None:
    address, path = ray_cluster
    sweep_dir = prepared / "ray"
    result = mlflow_run(
        prepared,
        f"hydra/launcher=ray hydra.launcher.ray.init.address={address} "
        "+hydra.launcher.ray.init.object_store_memory=null "
        f"main.execute_steps=train_random_forest {SMALL} {DEPTH}=5,10 "
        f"hydra.sweep.dir={sweep_dir} -m",
        python=str(ray_venv / "bin" / "python"),
        **path,
    )
    result.check()
    assert "Ray Launcher is launching 2 jobs" in result.stdout + result.stderr
    check_sweep(prepared, sweep_dir, 2, ("train_random_forest",))
