"""Serving the registered model: promote by alias, verified serving, `mlflow models serve` /
`predict`, Docker.

The module runs the pipeline once (`mlflow run`, a 20-tree forest, W&B off) into a fresh store,
then trains and evaluates a second version; the model is promoted with the documented command
and served by `models:/<name>@prod` from a process whose working directory is outside the
repository. One verified server (`python -m serving serve`) answers the request tests; the
promotion test restarts MLflow's plain `mlflow models serve` on the other version; the last
tests tamper with the stored model files (restoring them after) and see them refused.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from omegaconf import OmegaConf

from serving.local_server import free_port, serve
from serving.serving_example import to_payload
from tests.pipeline_runs import SMALL_FOREST, copy_store, mlflow_run, pipeline_env, sqlite_uri

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NAME = OmegaConf.select(OmegaConf.load(REPO / "config.yaml"), "main.registered_model_name")
PROD = f"models:/{NAME}@prod"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="module")
def outside(workdir: Path) -> Path:
    """A working directory outside the repository."""
    path = workdir / "elsewhere"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def env(workdir: Path) -> dict[str, str]:
    """A fresh shell's environment: the test store, W&B off, no PYTHONPATH."""
    return pipeline_env(workdir, sqlite_uri(workdir), MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600, **kw):
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def _pipeline(workdir: Path, env: dict[str, str], *overrides: str) -> None:
    mlflow_run(workdir, *overrides, SMALL_FOREST, env=env).check()


@pytest.fixture(scope="module")
def registry(workdir: Path, env: dict[str, str], dataset_path: Path) -> dict[str, str]:
    """Two trained versions: model_export:v0 (registry version 1) and v1 (version 2)."""
    from mlflow import MlflowClient

    # The experiment's artifacts stay in workdir (by default `mlflow run`, which works in the
    # repository, would put them under its ./mlruns). The store: a copy of a migrated one.
    assert copy_store(workdir) == env["MLFLOW_TRACKING_URI"]
    project = OmegaConf.load(REPO / "config.yaml").main.project_name
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    client.create_experiment(project, artifact_location=str(workdir / "artifacts"))
    _pipeline(workdir, env, f"data.file_url={dataset_path}")
    _pipeline(
        workdir, env, "main.execute_steps='train_random_forest,evaluate'", "main.random_seed=7"
    )
    return {"model_export:v0": "1", "model_export:v1": "2"}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "util_lib.artifacts", *args], env, REPO, timeout=120)


@pytest.fixture(scope="module")
def promoted(registry: dict[str, str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = _cli(env, "alias", "model_export:v0", "prod")
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def client(env: dict[str, str]):
    from mlflow import MlflowClient

    return MlflowClient(env["MLFLOW_TRACKING_URI"])


@pytest.fixture(scope="module")
def tracking_env(env: dict[str, str]) -> Iterator[None]:
    """This process reads the test store too (for the in-process reference models)."""
    import mlflow

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        yield
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def songs(registry, env: dict[str, str], workdir: Path) -> pd.DataFrame:
    """The test split the pipeline wrote, without the genre."""
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    store = MlflowArtifactStore(env["MLFLOW_TRACKING_URI"])
    path = store.download(store.resolve("data_test:v0"), workdir / "data_test")
    return pd.read_parquet(path).drop(columns="genre").reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(registry, tracking_env, songs: pd.DataFrame):
    """In-process pyfunc models of both versions, and the columns they read."""
    import mlflow.pyfunc

    models = {v: mlflow.pyfunc.load_model(f"models:/{NAME}/{v}") for v in ("1", "2")}
    columns = list(models["1"].metadata.get_input_schema().input_names())
    return models, columns


@pytest.fixture(scope="module")
def server(promoted, env: dict[str, str], outside: Path, workdir: Path) -> Iterator[str]:
    """`python -m serving serve -m models:/<name>@prod` from outside the repo; yields its URL."""
    with serve(PROD, workdir / "serve-prod.log", cwd=outside, env=env, verified=True) as url:
        yield url


def _refusal(answer: requests.Response, sent: str = "") -> str:
    """A clean 400: only error_code and a short message, no stack trace, no server path, no
    more than a short excerpt of the request; returns the message."""
    assert answer.status_code == 400, answer.text[:2000]
    body = answer.json()
    assert set(body) == {"error_code", "message"}, body
    for leak in ("Traceback", "stack_trace", 'File "', str(REPO), "/tmp/", "site-packages"):
        assert leak not in answer.text, (leak, answer.text)
    assert len(body["message"]) <= 300
    if sent:
        assert sent[:120] not in answer.text  # the request is not echoed back
    return body["message"]


def _post(url: str, rows: pd.DataFrame, params: dict | None = None) -> requests.Response:
    return requests.post(url, data=to_payload(rows, params), headers=JSON, timeout=120)


def _predictions(answer: requests.Response) -> list:
    assert answer.status_code == 200, answer.text[:2000]
    return answer.json()["predictions"]


# ----------------------------------------------------------------------------- registry


def test_each_training_run_registered_a_version_with_its_scores(registry, client) -> None:
    for spec, version in registry.items():
        mv = client.get_model_version(NAME, version)
        assert mv.tags["util_lib.artifact"] == spec
        assert float(mv.tags["val_auc"]) > 0.9
        assert float(mv.tags["test_auc"]) > 0.9
        assert mv.tags["test_data"] == "data_test:v0"


def test_the_promotion_command_sets_prod_on_artifact_and_registry(promoted, client, env) -> None:
    assert promoted.stdout.splitlines() == [
        "prod -> model_export:v0",
        f"prod -> models:/{NAME}/1 (serve {PROD})",
    ]
    assert str(client.get_model_version_by_alias(NAME, "prod").version) == "1"
    listing = _cli(env, "list", "model_export").stdout
    assert "prod" in next(line for line in listing.splitlines() if "model_export:v0" in line)


# ----------------------------------------------------------------------------- REST


def test_the_server_runs_where_the_repository_is_out_of_reach(
    server: str, env: dict[str, str], outside: Path
) -> None:
    probe = _run([sys.executable, "-c", "import util_lib"], env, outside, timeout=60)
    assert probe.returncode != 0 and "No module named 'util_lib'" in probe.stderr


def test_one_row_and_a_batch_equal_the_in_process_predictions(
    server: str, reference, songs: pd.DataFrame
) -> None:
    models, columns = reference
    one = songs.iloc[[3]][columns]
    assert _predictions(_post(server, one)) == list(models["1"].predict(one))
    batch = songs.iloc[:1000][columns]
    assert _predictions(_post(server, batch)) == list(models["1"].predict(batch))


def test_probabilities_on_request_per_genre(server: str, reference, songs) -> None:
    models, columns = reference
    rows = songs.iloc[:20][columns]
    answer = _predictions(_post(server, rows, {"predict_method": "predict_proba"}))
    expected = models["1"].predict(rows, params={"predict_method": "predict_proba"})
    assert pd.DataFrame(answer).columns.tolist() == expected.columns.tolist()
    np.testing.assert_allclose(pd.DataFrame(answer).to_numpy(), expected.to_numpy())
    labels = [max(p, key=p.get) for p in answer]
    assert labels == _predictions(_post(server, rows))


def test_missing_values_in_numerical_and_text_columns_get_predictions(
    server: str, reference, songs: pd.DataFrame
) -> None:
    models, columns = reference
    rows = songs.iloc[:6][columns].copy()
    rows.loc[0, "loudness"] = np.nan
    rows.loc[1, "tempo"] = np.nan
    rows.loc[2, ["danceability", "energy", "valence"]] = np.nan
    rows[["title", "song_name"]] = rows[["title", "song_name"]].astype(object)
    rows.loc[3, ["title", "song_name"]] = None
    rows.loc[4, ["loudness", "title"]] = [np.nan, None]
    body = json.loads(to_payload(rows))["dataframe_split"]["data"]
    assert body[0][columns.index("loudness")] is None  # sent as null
    assert _predictions(_post(server, rows)) == list(models["1"].predict(rows))


def test_a_null_in_an_integer_column_is_a_400_naming_it(server: str, reference, songs) -> None:
    _, columns = reference
    rows = songs.iloc[:2][columns].astype(object)
    rows.loc[1, "key"] = None
    assert "column key" in _refusal(_post(server, rows))


def test_a_missing_column_is_a_400_naming_it(server: str, reference, songs) -> None:
    _, columns = reference
    answer = _post(server, songs.iloc[:3][columns].drop(columns="energy"))
    assert "missing inputs ['energy']" in _refusal(answer)


def test_a_wrong_type_is_a_400(server: str, reference, songs) -> None:
    _, columns = reference
    rows = songs.iloc[:2][columns].astype(object)
    rows.loc[0, "danceability"] = "very danceable"
    assert "column danceability" in _refusal(_post(server, rows))


@pytest.mark.parametrize(
    ("column", "value", "bound"),
    [
        ("danceability", -50.0, "outside [0.0, 1.0]"),
        ("key", 99, "outside [-1, 11]"),
        ("time_signature", 7, "not one the model was trained on [1, 3, 4, 5]"),
    ],
)
def test_a_value_outside_the_domain_is_a_400_naming_column_value_and_bound(
    server: str, reference, songs, column: str, value: float, bound: str
) -> None:
    """The data contract's ranges (and the categories the model knows) guard the server;
    missing values stay allowed (test_missing_values_in_numerical_and_text_columns_...)."""
    models, columns = reference
    rows = songs.iloc[:3][columns].copy()
    rows.loc[1, column] = value
    answer = _post(server, rows)
    message = _refusal(answer, to_payload(rows))
    expected = f"column '{column}': value {value!r} (row 1) is {bound}"
    assert f"input outside the model's domain: {expected}" in message
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # The other rows alone are fine.
    assert _predictions(_post(server, rows.drop(index=1))) == list(
        models["1"].predict(rows.drop(index=1))
    )


def test_malformed_json_is_a_400(server: str) -> None:
    answer = requests.post(
        server, data='{"dataframe_split": {"columns": [', headers=JSON, timeout=60
    )
    assert "Expecting value" in _refusal(answer)


def test_a_bad_csv_or_parquet_body_is_a_clean_400(server: str, reference, songs) -> None:
    """MLflow's own answer to these carries a full stack trace with the server's paths."""
    _, columns = reference
    csv = songs.iloc[:50][columns].to_csv(index=False)
    broken = csv.replace("\n", '\n"', 3)  # an unterminated quote on line 2
    answer = requests.post(server, data=broken, headers={"Content-Type": "text/csv"}, timeout=60)
    assert "Failed to parse input as a Pandas DataFrame" in _refusal(answer, broken)
    answer = requests.post(
        server,
        data=b"PAR1 not parquet at all " * 40,
        headers={"Content-Type": "application/vnd.apache.parquet"},
        timeout=60,
    )
    assert "Failed to parse input as a Pandas DataFrame" in _refusal(answer)


def test_serving_example_against_the_live_server(
    server: str, env: dict[str, str], outside: Path, reference, songs: pd.DataFrame
) -> None:
    models, columns = reference
    songs.iloc[:250].to_parquet(outside / "songs.parquet", index=False)
    script = str(REPO / "serving" / "serving_example.py")
    scored = _run(
        [sys.executable, script, "--url", server, "--input", "songs.parquet", "--batch-size", "64"],
        env,
        outside,
    )
    assert scored.returncode == 0, scored.stderr
    genres = [line.split("\t")[1] for line in scored.stdout.splitlines()]
    assert genres == list(models["1"].predict(songs.iloc[:250][columns]))
    assert "250 rows scored in 4 request(s)" in scored.stderr

    # Default input: the model's input example, found through models:/<name>@prod.
    example = _run([sys.executable, script, "--url", server], env, outside)
    assert example.returncode == 0, example.stderr
    assert len(example.stdout.splitlines()) == 5

    songs.iloc[:3].drop(columns="energy").to_csv(outside / "bad.csv", index=False)
    refused = _run([sys.executable, script, "--url", server, "--input", "bad.csv"], env, outside)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "answered 400: Model is missing inputs ['energy']" in refused.stderr


# ----------------------------------------------------------------------------- batch, Docker


def test_mlflow_models_predict_scores_csv_and_json_files(
    promoted, env: dict[str, str], outside: Path, workdir: Path, reference, songs
) -> None:
    models, columns = reference
    rows = songs.iloc[:40][columns]
    expected = list(models["1"].predict(rows))
    rows.to_csv(outside / "batch.csv", index=False)
    by_alias = _run(
        ["mlflow", "models", "predict", "-m", PROD, "-i", "batch.csv", "-t", "csv",
         "-o", "out_csv.json", "--env-manager", "local"],
        env,
        outside,
    )  # fmt: skip
    assert by_alias.returncode == 0, by_alias.stderr[-3000:]
    assert json.loads((outside / "out_csv.json").read_text())["predictions"] == expected

    # A folder fetched from the artifact store, scored from a JSON file.
    fetched = _cli(env, "get", "model_export:prod", "--root", str(workdir / "fetched"))
    assert fetched.returncode == 0, fetched.stderr
    (outside / "batch.json").write_text(to_payload(rows))
    by_folder = _run(
        ["mlflow", "models", "predict", "-m", str(workdir / "fetched"), "-i", "batch.json",
         "-t", "json", "-o", "out_json.json", "--env-manager", "local"],
        env,
        outside,
    )  # fmt: skip
    assert by_folder.returncode == 0, by_folder.stderr[-3000:]
    assert json.loads((outside / "out_json.json").read_text())["predictions"] == expected


def test_mlflow_models_predict_scores_the_models_own_input_example(
    registry, env: dict[str, str], workdir: Path
) -> None:
    """The seed's usage: fetch model_export, score its input_example.json with the CLI."""
    import mlflow.pyfunc
    from mlflow.models import Model

    fetched = _cli(env, "get", "model_export:latest", "--root", str(workdir / "seed" / "model"))
    assert fetched.returncode == 0, fetched.stderr
    scored = _run(
        ["mlflow", "models", "predict", "-t", "json", "-i", "model/input_example.json",
         "-m", "model", "--env-manager", "local"],
        env,
        workdir / "seed",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    predictions = json.loads(scored.stdout.strip().splitlines()[-1])["predictions"]

    model_dir = str(workdir / "seed" / "model")
    rows = Model.load(model_dir).load_input_example(model_dir)
    assert len(rows) == 5
    assert predictions == list(mlflow.pyfunc.load_model(model_dir).predict(rows))


def test_generated_dockerfile_copies_the_promoted_model(
    promoted, env: dict[str, str], outside: Path, client
) -> None:
    generated = _run(
        ["mlflow", "models", "generate-dockerfile", "-m", PROD, "-d", "docker"], env, outside
    )
    assert generated.returncode == 0, generated.stderr[-3000:]
    dockerfile = (outside / "docker" / "Dockerfile").read_text()
    copy = re.search(r"^COPY (\S+) /opt/ml/model$", dockerfile, re.MULTILINE)
    assert copy, dockerfile
    copied = outside / "docker" / copy[1]
    assert (copied / "code" / "util_lib" / "model" / "pyfunc.py").is_file()
    uuid = yaml.safe_load((copied / "MLmodel").read_text())["model_uuid"]
    assert uuid == yaml.safe_load((_stored_model(env) / "MLmodel").read_text())["model_uuid"]


# ----------------------------------------------------------------------------- promotion


def test_promotion_moves_prod_and_a_restarted_server_serves_that_version(
    server: str, env: dict[str, str], outside: Path, workdir: Path, reference, songs, client
) -> None:
    models, columns = reference
    rows = songs.iloc[:50][columns]
    proba = {"predict_method": "predict_proba"}
    v1 = models["1"].predict(rows, params=proba).to_numpy()
    v2 = models["2"].predict(rows, params=proba).to_numpy()
    assert not np.allclose(v1, v2)  # the two forests are told apart by their probabilities

    moved = _cli(env, "alias", "model_export:v1", "prod")
    assert moved.returncode == 0, moved.stderr
    assert f"prod -> models:/{NAME}/2 (serve {PROD})" in moved.stdout
    assert str(client.get_model_version_by_alias(NAME, "prod").version) == "2"

    with serve(PROD, workdir / "serve-prod-2.log", cwd=outside, env=env) as restarted:
        answer = pd.DataFrame(_predictions(_post(restarted, rows, proba))).to_numpy()
    np.testing.assert_allclose(answer, v2)
    # The server started before the promotion still serves what it loaded.
    before = pd.DataFrame(_predictions(_post(server, rows, proba))).to_numpy()
    np.testing.assert_allclose(before, v1)


# ----------------------------------------------------------------------------- verified files


def _stored_model(env: dict[str, str], spec: str = "model_export:v0") -> Path:
    """The one stored copy of a model's files (the logged model's, which the registry version
    and the artifact version share)."""
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    store = MlflowArtifactStore(env["MLFLOW_TRACKING_URI"])
    return Path(store.files_uri(store.resolve(spec)).removeprefix("file://"))


def test_registry_logged_model_and_artifact_share_one_copy(registry, client, env) -> None:
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    artifact = MlflowArtifactStore(env["MLFLOW_TRACKING_URI"]).resolve("model_export:v0")
    model_id = artifact.metadata["model_id"]
    assert client.get_model_version(NAME, "1").source == f"models:/{model_id}" == artifact.source
    assert set(artifact.files) >= {"MLmodel", "model.skops", "code/util_lib/model/pyfunc.py"}
    verified = _cli(env, "verify", "model_export:v0")
    assert verified.returncode == 0, verified.stderr
    assert f"all {len(artifact.files)} files match their sha256 digests" in verified.stdout


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _verify(env: dict[str, str], spec: str = "model_export:v0") -> subprocess.CompletedProcess:
    """``python -m util_lib.artifacts verify <spec>`` on the module's store, run in this process
    (tests/cli.py): the same code on the same files, without an interpreter's start. The
    command as a process: test_registry_logged_model_and_artifact_share_one_copy."""
    from tests.cli import run_main
    from util_lib.artifacts.cli import main

    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "WANDB_MODE"):
            patch.setenv(name, env[name])
        return run_main(main, "verify", spec)


# Each way of changing the stored files, and the file the refusal must name.
TAMPERING = {
    "bundled code changed": "code/util_lib/model/pyfunc.py",
    "MLmodel trusts posix.system": "MLmodel",
    "a file added": "code/util_lib/sitecustomize.py",
    "a file removed": "input_domain.json",
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_a_tampered_model_is_refused_before_any_of_its_code_runs(
    registry, env: dict[str, str], outside: Path, workdir: Path, tampering: str
) -> None:
    files = _stored_model(env)
    ran = workdir / f"hostile code ran ({tampering})"
    hostile = f"\nopen({str(ran)!r}, 'w').close()\n"
    backup = {p: p.read_bytes() for p in files.rglob("*") if p.is_file()}
    try:
        if tampering == "bundled code changed":
            _append(files / "code/util_lib/model/pyfunc.py", hostile)
        elif tampering == "MLmodel trusts posix.system":
            mlmodel = (files / "MLmodel").read_text()
            (files / "MLmodel").write_text(
                mlmodel.replace("- numpy.dtype", "- numpy.dtype\n    - posix.system", 1)
            )
            assert "posix.system" in (files / "MLmodel").read_text()
        elif tampering == "a file added":
            (files / "code/util_lib/sitecustomize.py").write_text(hostile)
        else:
            (files / "input_domain.json").unlink()
        named = TAMPERING[tampering]

        verified = _verify(env)
        assert verified.returncode == 1
        assert named in verified.stderr and "differ from their recorded sha256" in verified.stderr

        served = _run(
            [sys.executable, "-m", "serving", "serve", "-m", f"models:/{NAME}/1",
             "--port", str(free_port())],
            {**env, "PYTHONPATH": str(REPO)},
            outside,
            timeout=300,
        )  # fmt: skip
        assert served.returncode == 1, served.stdout + served.stderr
        assert named in served.stderr and "refusing to use them" in served.stderr
        assert not ran.exists()
    finally:
        for path in [p for p in files.rglob("*") if p.is_file() and p not in backup]:
            path.unlink()
        for path, content in backup.items():
            path.write_bytes(content)
    assert _verify(env).returncode == 0
