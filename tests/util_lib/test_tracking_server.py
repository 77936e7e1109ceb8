"""The pipeline's tracking server: MLflow's REST API on a local store, from a thread, for the
pipeline's steps only."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import tools
from util_lib.names import (
    HTTP_BACKOFF_FACTOR_ENV,
    HTTP_MAX_RETRIES_ENV,
    HTTP_TIMEOUT_ENV,
    TRACKING_TOKEN_ENV,
)
from util_lib.pipeline.tracking_server import STEP_HTTP_SETTINGS, start_pipeline_server

REPO = Path(__file__).resolve().parents[2]
STEP_VARIABLES = (TRACKING_TOKEN_ENV, *STEP_HTTP_SETTINGS)


def test_steps_write_through_the_server_to_the_store(tracking: Path) -> None:
    """A process given the server's URL (and the environment mlflow.run hands a step, the
    token included) logs a run that the store itself then holds."""
    import mlflow
    from mlflow import MlflowClient

    store_uri = os.environ["MLFLOW_TRACKING_URI"]
    experiment = MlflowClient(store_uri).create_experiment("served")
    server = start_pipeline_server(store_uri)
    assert server is not None
    try:
        assert server.url.startswith("http://127.0.0.1:")
        # The registry still follows the tracking URI, in the driver and in the steps.
        assert "MLFLOW_REGISTRY_URI" not in os.environ
        mlflow.set_tracking_uri(server.url)
        assert mlflow.get_registry_uri() == server.url
        mlflow.set_tracking_uri(store_uri)
        script = (
            "import mlflow, os, sys\n"
            "from mlflow.store.tracking.rest_store import RestStore\n"
            "assert os.environ.get('MLFLOW_TRACKING_TOKEN'), 'no token reached the step'\n"
            "with mlflow.start_run(experiment_id=sys.argv[1]) as run:\n"
            "    mlflow.log_param('alpha', '0.5')\n"
            "    mlflow.set_tag('note', 'over REST')\n"
            "assert isinstance(mlflow.MlflowClient()._tracking_client.store, RestStore)\n"
            "assert 'sqlalchemy' not in sys.modules, 'the step opened the store itself'\n"
            "print(run.info.run_id)\n"
        )
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", script, experiment],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        run_id = done.stdout.split()[-1]
    finally:
        server.stop()
    run = MlflowClient(store_uri).get_run(run_id)
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.tags["note"] == "over REST"
    # Stopped: the port no longer answers.
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/health", timeout=2)


def test_a_second_server_in_a_process_serves_its_own_store(
    tracking: Path, migrated_store: Path
) -> None:
    """MLflow's app keeps its stores in module globals: the second server must not serve the
    first one's store."""
    from mlflow import MlflowClient

    from tests.pipeline_runs import sqlite_uri

    second = tracking / "second"
    second.mkdir()
    shutil.copyfile(migrated_store, second / "mlflow.db")
    for uri, name in ((os.environ["MLFLOW_TRACKING_URI"], "first"), (sqlite_uri(second), "two")):
        server = start_pipeline_server(uri)
        assert server is not None
        try:
            MlflowClient(server.url).create_experiment(name)
        finally:
            server.stop()
        assert MlflowClient(uri).get_experiment_by_name(name) is not None, (uri, name)


def test_no_server_for_a_remote_store_or_when_turned_off(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert start_pipeline_server("http://127.0.0.1:5000") is None
    assert start_pipeline_server("postgresql://db/mlflow") is None
    monkeypatch.setenv("UTIL_LIB_TRACKING_SERVER", "false")
    assert start_pipeline_server(os.environ["MLFLOW_TRACKING_URI"]) is None


def test_the_server_listens_on_loopback_only(tracking: Path) -> None:
    server = start_pipeline_server(os.environ["MLFLOW_TRACKING_URI"])
    assert server is not None
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert _get(f"{server.url}/health", _bearer()) == (200, b"OK")
        address = _other_address()
        if address is None:
            pytest.skip("no address besides loopback on this machine")
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
            pass
    finally:
        server.stop()


def test_another_user_can_neither_read_nor_change_the_store(tracking: Path) -> None:
    """While a pipeline serves its store, a process of another uid (which can find the port in
    /proc/net/tcp) gets 401 for every read and write, cannot read the token from the driver's
    environment, and changes nothing: ``@prod`` stays on the pipeline's model."""
    _need_another_uid()
    from mlflow import MlflowClient

    from util_lib.pipeline.launch import pipeline_server

    store_uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(store_uri)
    client.create_registered_model("model_export")
    client.create_model_version("model_export", source=str(tracking / "model"))
    client.set_registered_model_alias("model_export", "prod", "1")
    before = _dump(tracking / "mlflow.db")
    with pipeline_server(True, store_uri) as steps_uri:
        url = steps_uri()
        assert url is not None
        assert _get(f"{url}/api/2.0/mlflow/experiments/search?max_results=5", _bearer())[0] == 200
        answers = _as_nobody(_ATTACKER, url, str(os.getpid()))
    assert answers["environ"] == "PermissionError"
    statuses = {(a["call"], a["auth"]): a["status"] for a in answers["calls"]}
    assert statuses and set(statuses.values()) == {401}, statuses
    assert all(b"pipeline's steps" in a["body"].encode() for a in answers["calls"])
    assert all("model_export" not in a["body"] for a in answers["calls"])
    assert _dump(tracking / "mlflow.db") == before
    assert str(client.get_model_version_by_alias("model_export", "prod").version) == "1"


def test_a_foreign_host_gets_403_even_with_the_token(tracking: Path) -> None:
    """DNS rebinding: a page's request to the loopback port names the page's own host."""
    server = start_pipeline_server(os.environ["MLFLOW_TRACKING_URI"])
    assert server is not None
    try:
        port = server.url.rsplit(":", 1)[1]
        search = f"{server.url}/api/2.0/mlflow/experiments/search?max_results=5"
        for host in (f"rebind.example:{port}", "rebind.example", f"127.0.0.1:{int(port) + 1}"):
            status, body = _get(search, {**_bearer(), "Host": host})
            assert status == 403, (host, status, body)
            assert b"Host" in body and b"Default" not in body
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert _get(search, {**_bearer(), "Host": host})[0] == 200, host
    finally:
        server.stop()


def test_the_token_reaches_the_steps_only_while_the_server_runs(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """main.py's server context: the token and the steps' HTTP bounds are in the environment
    mlflow.run hands the steps while it serves, gone when it stops; the user's own HTTP
    setting stands."""
    from util_lib.pipeline.launch import pipeline_server

    monkeypatch.setenv(HTTP_TIMEOUT_ENV, "77")
    with pipeline_server(True, os.environ["MLFLOW_TRACKING_URI"]) as steps_uri:
        assert steps_uri() is not None
        token = os.environ[TRACKING_TOKEN_ENV]
        assert len(token) >= 32
        assert os.environ[HTTP_MAX_RETRIES_ENV] == STEP_HTTP_SETTINGS[HTTP_MAX_RETRIES_ENV]
        assert os.environ[HTTP_BACKOFF_FACTOR_ENV] == STEP_HTTP_SETTINGS[HTTP_BACKOFF_FACTOR_ENV]
        assert os.environ[HTTP_TIMEOUT_ENV] == "77"
    assert TRACKING_TOKEN_ENV not in os.environ
    assert HTTP_MAX_RETRIES_ENV not in os.environ
    assert HTTP_BACKOFF_FACTOR_ENV not in os.environ
    assert os.environ[HTTP_TIMEOUT_ENV] == "77"
    # A new secret for each pipeline.
    with pipeline_server(True, os.environ["MLFLOW_TRACKING_URI"]) as steps_uri:
        assert steps_uri() is not None
        assert os.environ[TRACKING_TOKEN_ENV] != token


@pytest.mark.parametrize(
    "credentials",
    [
        {TRACKING_TOKEN_ENV: "the-team-server-token"},
        {"MLFLOW_TRACKING_USERNAME": "ada", "MLFLOW_TRACKING_PASSWORD": "team-password"},
    ],
    ids=["token", "user-and-password"],
)
def test_the_user_s_own_credentials_are_left_alone(
    tracking: Path, monkeypatch: pytest.MonkeyPatch, credentials: dict[str, str]
) -> None:
    """MLflow would send them in the token's place: the pipeline does without its server (the
    steps use the store directly) rather than overwrite them."""
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    assert start_pipeline_server(os.environ["MLFLOW_TRACKING_URI"]) is None
    for name, value in credentials.items():
        assert os.environ[name] == value
    assert HTTP_MAX_RETRIES_ENV not in os.environ


def test_the_token_is_in_no_log_parameter_or_tag(tracking: Path) -> None:
    """A step's calls through the server, logging everything at DEBUG to the pipeline's log:
    the token is in no line, and nowhere in the store."""
    import mlflow
    from mlflow import MlflowClient

    from util_lib.step.logs import setup_logging

    store_uri = os.environ["MLFLOW_TRACKING_URI"]
    server = start_pipeline_server(store_uri)
    assert server is not None
    token = os.environ[TRACKING_TOKEN_ENV]
    (tracking / "model.txt").write_text("weights")
    log_file = setup_logging("train_random_forest", level=logging.DEBUG)
    with _everything_logged() as lines:
        try:
            mlflow.set_tracking_uri(server.url)
            with mlflow.start_run() as run:
                mlflow.log_param("n_estimators", "20")
                mlflow.set_tag("util_lib.step", "train_random_forest")
                mlflow.log_metric("val_auc", 0.9)
                mlflow.log_artifact(str(tracking / "model.txt"))
            client = MlflowClient(server.url)
            client.create_registered_model("model_export")
            client.create_model_version(
                "model_export", source=run.info.artifact_uri, run_id=run.info.run_id
            )
            client.set_registered_model_alias("model_export", "prod", "1")
            # A refused request is logged (when the server stops) without the token.
            assert _get(f"{server.url}/health", {"Authorization": "Bearer guess"})[0] == 401
        finally:
            mlflow.set_tracking_uri(store_uri)
            server.stop()
    assert any("POST /api/2.0/mlflow/runs/create" in line for line in lines), lines[-20:]
    assert any("refused 1 request(s)" in line for line in lines)
    assert not [line for line in lines if token in line]
    assert token not in log_file.read_text()
    recorded = MlflowClient(store_uri).get_run(run.info.run_id).data
    assert token not in json.dumps([recorded.params, recorded.tags])
    assert token not in "\n".join(_dump(tracking / "mlflow.db"))


def test_a_full_disk_fails_a_step_within_seconds_naming_the_store(
    tracking: Path, migrated_store: Path
) -> None:
    """The store's disk fills while a step logs: its MLflow client gets an answer it does not
    retry, which names the database and says "no space left on device" (MLflow's own answer,
    503, is retried for about 4 minutes)."""
    _need_root_for("mount a small tmpfs", "mount")
    disk = tracking / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        shutil.copyfile(migrated_store, disk / "mlflow.db")
        store_uri = f"sqlite:///{disk / 'mlflow.db'}"
        from mlflow import MlflowClient

        run = MlflowClient(store_uri).create_run("0")
        server = start_pipeline_server(store_uri)
        assert server is not None
        try:
            _fill(disk)
            step = (
                "import sys\n"
                "from mlflow import MlflowClient\n"
                "for i in range(100):\n"
                "    MlflowClient().log_param(sys.argv[1], f'p{i}', 'v' * 500)\n"
            )
            env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
            done = subprocess.run(
                [sys.executable, "-c", step, run.info.run_id],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.stop()
        assert done.returncode != 0, done.stdout
        last = done.stderr.strip().splitlines()[-1]
        assert "no space left on device" in last, done.stderr[-3000:]
        assert str(disk / "mlflow.db") in last, last
    finally:
        _unmount(disk)


# ----------------------------------------------------------------------------- helpers
# Another user's process: it found the port; it guesses no token, then a wrong one. It forges
# version 2 of model_export and moves @prod to it. It also
# tries to read the token where the driver keeps it, in its environment.
_ATTACKER = r"""
import json, sys, urllib.error, urllib.request
url, driver = sys.argv[1], sys.argv[2]
api = url + "/api/2.0/mlflow/"
calls = {
    "search experiments": ("GET", api + "experiments/search?max_results=100", None),
    "read @prod": ("GET", api + "registered-models/alias?name=model_export&alias=prod", None),
    "UI search": ("GET", url + "/ajax-api/2.0/mlflow/experiments/search?max_results=5", None),
    "create model": ("POST", api + "registered-models/create", {"name": "forged"}),
    "create version": (
        "POST", api + "model-versions/create", {"name": "model_export", "source": "/tmp/forged"}
    ),
    "move @prod": (
        "POST",
        api + "registered-models/alias",
        {"name": "model_export", "alias": "prod", "version": "2"},
    ),
}
answers = []
for auth in ({}, {"Authorization": "Bearer 0123456789abcdef"}):
    for name, (method, target, payload) in calls.items():
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json", **auth}
        request = urllib.request.Request(target, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        answers.append(
            {"call": name, "auth": bool(auth), "status": status, "body": body.decode()[:300]}
        )
try:
    open(f"/proc/{driver}/environ", "rb").read()
    environ = "read"
except PermissionError:
    environ = "PermissionError"
print(json.dumps({"calls": answers, "environ": environ}))
"""


def _need_another_uid() -> None:
    _need_root_for("run a process as uid nobody", "setpriv")


def _need_root_for(what: str, tool: str) -> None:
    """Skip (fail under CI) unless this runs as root with ``tool`` (util-linux) installed."""
    tools.need(tool, why=what)
    if os.geteuid() != 0:
        reason = f"needs root to {what}"
        pytest.fail(reason) if os.environ.get("CI") else pytest.skip(reason)


def _as_nobody(script: str, *args: str) -> dict:
    """Run ``script`` as uid nobody, with none of this process's environment (its token)."""
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            sys.executable,
            "-c",
            script,
            *args,
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bearer() -> dict[str, str]:
    """The header a step's MLflow client sends, from the token the server put in this
    process's environment."""
    return {"Authorization": f"Bearer {os.environ[TRACKING_TOKEN_ENV]}"}


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _dump(database: Path) -> list[str]:
    """Every row of the SQLite file, as SQL (read-only)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = list(connection.iterdump())
    connection.close()
    return rows


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _everything_logged() -> Iterator[list[str]]:
    """Every record at DEBUG, MLflow's and urllib3's included (MLflow's logger does not
    propagate to the root's), with each record's arguments formatted in."""
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in ("", "mlflow", "urllib3", "werkzeug")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _fill(disk: Path) -> None:
    """Write to ``disk`` until nothing more fits."""
    with contextlib.suppress(OSError), (disk / "filler").open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 65536)


def _unmount(disk: Path) -> None:
    """Unmount ``disk``; lazily if the store's connections (MLflow's pool) still hold it."""
    if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def _other_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent (UDP)
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
