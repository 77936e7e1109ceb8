"""The pipeline's tracking server: MLflow's REST API on a local store, from a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from util_lib.tracking_server import start_pipeline_server

REPO = Path(__file__).resolve().parents[2]


def test_steps_write_through_the_server_to_the_store(tracking: Path) -> None:
    """A process given the server's URL logs a run that the store itself then holds."""
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
            "import mlflow, sys\n"
            "from mlflow.store.tracking.rest_store import RestStore\n"
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
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as answer:
            assert answer.read() == b"OK"
        address = _other_address()
        if address is None:
            pytest.skip("no address besides loopback on this machine")
        with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
            pass
    finally:
        server.stop()


def _other_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent (UDP)
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
