"""A data URL that holds secrets (user-info, ``?token=``, ``?code=``) and fails to download:
the secret is found in no error, log line, stderr, MLflow parameter or tag, or W&B file.

Real failures on 127.0.0.1: a closed port, an unknown host (``.invalid`` never resolves), a
server that never answers, redirects to URLs with a token, and a server that serves the data.
The URL reaches get_data as the driver hands it over (:func:`util_lib.step.arguments.hide_secrets`:
the redacted value as the parameter, the real one in ``UTIL_LIB_SECRET_FILE_URL``), in a
process that knows nothing else of it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from get_data import run as get_data_run
from get_data.download import DownloadError, download_dataset
from serving.local_server import free_port
from util_lib import redact
from util_lib.step.arguments import hide_secrets
from util_lib.step.logs import setup_logging

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3tZ9"  # the user's password and the query's value
REDIRECT_SECRET = "r3dir3ctQ7"  # a token the server hands out in a redirect
CODE = "c0deK5"  # a value whose parameter name (code) says nothing of a secret
ENV_VAR = "SONGS_URL"  # data.file_url='${oc.env:SONGS_URL}'


def _secrets() -> tuple[str, ...]:
    return SECRET, REDIRECT_SECRET, CODE


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secret, as a new process does."""
    _forget_secrets(monkeypatch)


def _forget_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_secret_texts", set())
    monkeypatch.setattr(redact, "_secret_places", set())
    monkeypatch.setattr(redact, "_registered_env", set())
    monkeypatch.setattr(redact, "_pattern", None)


class _Handler(BaseHTTPRequestHandler):
    """/data.parquet: the dataset; /redirect: 302 to /landing?token=...; /redirect-away:
    302 to a closed port with a token; anything else 404."""

    payload = b""
    closed_port = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/data.parquet":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload)
        elif path == "/redirect":
            self._redirect(f"/landing?token={REDIRECT_SECRET}&code={CODE}")
        elif path == "/redirect-away":
            self._redirect(f"http://127.0.0.1:{self.closed_port}/x?token={REDIRECT_SECRET}")
        else:
            self.send_error(404)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base(dataset_path: Path) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a real HTTP server (see :class:`_Handler`)."""
    attributes = {"payload": dataset_path.read_bytes(), "closed_port": free_port()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), attributes))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def _url(where: str, path: str = "/data.parquet", query: str = f"token={SECRET}") -> str:
    return f"http://alice:{SECRET}@{where}{path}?{query}"


def _failing_urls(base: str) -> dict[str, str]:
    return {
        "closed-port": _url(f"127.0.0.1:{free_port()}"),
        "unknown-host": _url("no-such-host.invalid", query=f"code={CODE}&raw=true"),
        "redirect-then-404": _url(base, "/redirect", f"code={CODE}"),
        "redirect-to-closed-port": _url(base, "/redirect-away"),
    }


def _hand_over(url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """What the driver does with ``data.file_url='${oc.env:SONGS_URL}'``: the parameter it
    passes (returned) and the environment it sets; then forget, as a new process would."""
    monkeypatch.setenv(ENV_VAR, url)
    shown, hidden = hide_secrets({"file_url": url})
    for name, value in hidden.items():
        monkeypatch.setenv(name, value)
    _forget_secrets(monkeypatch)
    assert not any(s in shown["file_url"] for s in _secrets()), shown
    return shown["file_url"]


def _argv(file_url: str) -> list[str]:
    return [
        "--file_url", file_url, "--sha256", "null", "--artifact_name", "raw_data.parquet",
        "--artifact_type", "raw_data", "--artifact_description", "raw data",
        "--dataset", "conf/dataset/genres.yaml",
    ]  # fmt: skip


def _files_holding_a_secret(folder: Path) -> list[str]:
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in _secrets())
    ]


def _recorded(tracking_uri: str) -> str:
    """Every parameter and tag of every run of the store, as one text."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs, "get_data made no MLflow run"
    return "\n".join(f"{r.data.params} {r.data.tags}" for r in runs)


@pytest.mark.parametrize(
    "case", ["closed-port", "unknown-host", "redirect-then-404", "redirect-to-closed-port"]
)
def test_a_failed_download_names_the_url_and_cause_without_the_secret(
    case: str,
    base: str,
    tracking: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    url = _failing_urls(base)[case]
    with pytest.raises(SystemExit) as stop:
        get_data_run.main(_argv(_hand_over(url, monkeypatch)))
    assert stop.value.code == 1
    error = stop.value.__cause__
    assert isinstance(error, DownloadError)
    message = str(error)
    out, err = capfd.readouterr()
    log = (tracking / "ml_pipeline.log").read_text()
    for text in (message, out, err, log, _recorded(os.environ["MLFLOW_TRACKING_URI"])):
        assert not any(s in text for s in _secrets()), text
    assert _files_holding_a_secret(tracking) == []
    # The last line printed names the step, the URL (redacted) and the cause.
    last = err.strip().splitlines()[-2]  # before the run's closing "get_data FAILED"
    assert "get_data failed: DownloadError: Could not download http://alice:***@" in last
    cause = {
        "closed-port": "Connection refused",
        "unknown-host": "Failed to resolve 'no-such-host.invalid'",
        "redirect-then-404": "HTTP 404 Not Found (redirected to http://alice:***@127.0.0.1",
        "redirect-to-closed-port": "Connection refused",
    }[case]
    assert cause in last, last
    assert error.__cause__ is None and error.__suppress_context__ is False
    assert error.__context__ is None  # no urllib3 error chained to print


def test_a_server_that_never_answers_times_out_without_the_secret(
    silent_port: int, tracking: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    url = _url(f"127.0.0.1:{silent_port}", query=f"code={CODE}&sig={SECRET}")
    _hand_over(url, monkeypatch)
    setup_logging("get_data")
    with pytest.raises(DownloadError, match=r"timed out after 1 s") as info:
        download_dataset(get_data_run.reveal("file_url", redact.redact_url(url)), "x", timeout=1)
    out, err = capfd.readouterr()
    log = (tracking / "ml_pipeline.log").read_text()
    for text in (str(info.value), out, err, log):
        assert not any(s in text for s in _secrets()), text
    assert "code=***&sig=***" in str(info.value)


def test_a_url_with_a_code_is_downloaded_and_recorded_without_it(
    base: str, tracking: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """``?code=`` says nothing of a secret by its name, but the URL came from the
    environment: every query value is masked in the parameter, logs and metadata."""
    url = f"http://{base}/data.parquet?code={CODE}&v=2"
    shown = _hand_over(url, monkeypatch)
    assert shown == f"http://{base}/data.parquet?code=***&v=***"
    get_data_run.main(_argv(shown))
    out, err = capfd.readouterr()
    log = (tracking / "ml_pipeline.log").read_text()
    for text in (out, err, log, _recorded(os.environ["MLFLOW_TRACKING_URI"])):
        assert CODE not in text, text
    assert _files_holding_a_secret(tracking) == []
    assert "Logged raw_data.parquet:v0" in log


@pytest.mark.parametrize("case", ["closed-port", "unknown-host"])
def test_the_step_process_with_wandb_offline_writes_no_secret(
    case: str, base: str, tmp_path: Path, migrated_store: Path
) -> None:
    """get_data's run.py in a process of its own, W&B offline: its console capture, config,
    debug logs and run file hold no secret, nor do stderr, the log and the store."""
    from tests.pipeline_runs import copy_store

    url = _failing_urls(base)[case]
    os.environ[ENV_VAR] = url  # the driver's environment, for hide_secrets alone
    try:
        shown, hidden = hide_secrets({"file_url": url})
    finally:
        del os.environ[ENV_VAR]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))},
        **hidden,
        "MLFLOW_TRACKING_URI": copy_store(tmp_path),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "ML_PIPELINE_LOG": str(tmp_path / "ml_pipeline.log"),
        "PYTHONPATH": str(REPO),
        "UTIL_LIB_FORKSERVER": "false",
    }
    done = subprocess.run(
        [sys.executable, "run.py", *_argv(shown["file_url"])],
        cwd=REPO / "get_data",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert not any(s in done.stdout + done.stderr for s in _secrets()), done.stderr
    assert "Could not download http://alice:***@" in done.stderr.strip().splitlines()[-2]
    assert list(tmp_path.glob("wandb/offline-run-*/files/output.log")), "W&B captured nothing"
    assert _files_holding_a_secret(tmp_path) == []
    assert not any(s in _recorded(env["MLFLOW_TRACKING_URI"]) for s in _secrets())
