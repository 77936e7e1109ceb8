"""Secrets stay out: a data URL with a password and a token reaches get_data through the
environment, and is found nowhere the project prints or records; nor is the tracking token of
the pipeline's own tracking server, which reaches every step.

One pipeline run (``observed_run``) keeps both secrets; its two tests look at it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from serving.local_server import free_port
from tests import tools
from tests.pipeline_runs import SMALL_FOREST, mlflow_run
from util_lib import redact
from util_lib.redact import redact_text, redact_url, register_secret_url
from util_lib.step.arguments import hide_secrets, reveal, secret_env
from util_lib.step.logs import setup_logging

SECRET = "s3cr3t"
USER = "alice"
CODE = "c0deK5"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secret, as a new process does."""
    monkeypatch.setattr(redact, "_secret_texts", set())
    monkeypatch.setattr(redact, "_secret_places", set())
    monkeypatch.setattr(redact, "_registered_env", set())
    monkeypatch.setattr(redact, "_pattern", None)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:hunter2@host:5000", "http://alice:***@host:5000"),
        ("https://ghp_token@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://h/x.parquet?token=abc&raw=true", "https://h/x.parquet?token=***&raw=true"),
        (
            "https://s3/x?X-Amz-Signature=a&X-Amz-Credential=b",
            "https://s3/x?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://h/x.parquet?raw=true", "https://h/x.parquet?raw=true"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("/data/songs.parquet", "/data/songs.parquet"),
    ],
)
def test_urls_lose_their_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_url_in_a_text_is_redacted() -> None:
    text = "tracking http://alice:hunter2@h:5000, data 'https://h/x?token=abc'."
    assert redact_text(text) == "tracking http://alice:***@h:5000, data 'https://h/x?token=***'."


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (  # urllib3's message for a failed request names the path and query alone
            "Max retries exceeded with url: /genres_mod.parquet?token=s3cr3t (Caused by X)",
            "Max retries exceeded with url: /genres_mod.parquet?token=*** (Caused by X)",
        ),
        ("url: /x?code=abc&sig=d&flag", "url: /x?code=***&sig=***&***"),
        ("GET '/data/x.parquet?raw=true'.", "GET '/data/x.parquet?raw=***'."),
        ("see https://h/x?token=abc.", "see https://h/x?token=***."),
        ("(https://h/x?X-Amz-Signature=abc)", "(https://h/x?X-Amz-Signature=***)"),
        (  # a whole URL percent-encoded, e.g. inside another's query
            "next=https%3A%2F%2Falice%3Ahunter2%40h%2Fx%3Ftoken%3Dabc&x=1",
            "next=https%3A%2F%2Falice%3A***%40h%2Fx%3Ftoken%3D***&x=1",
        ),
        (
            "https://proxy/go?next=https%3A%2F%2Fh%2Fx%3Ftoken%3Dabc",
            "https://proxy/go?next=https://h/x%3Ftoken%3D***",
        ),
        ("no URL, a question? yes", "no URL, a question? yes"),
        ("http://h:5000/x?raw=true", "http://h:5000/x?raw=true"),
    ],
)
def test_every_form_of_a_url_in_a_text_is_redacted(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_a_secret_url_is_masked_wherever_it_shows_and_whatever_its_query_names() -> None:
    url = f"https://{USER}:hunter42@data.example/x.parquet?code={CODE}&sig=a%2Fb%2Bc9z&fmt=parquet"
    assert (
        redact_url(url)
        == f"https://{USER}:***@data.example/x.parquet?code={CODE}&sig=***&fmt=parquet"
    )
    register_secret_url(url)
    # Every query value of the same place, whatever its name.
    assert redact_url("https://data.example/x.parquet?code=other&fmt=csv") == (
        "https://data.example/x.parquet?code=***&fmt=***"
    )
    # Its parts anywhere, raw, decoded and encoded; plain words stay (fmt=parquet).
    text = f"code {CODE}, sig a/b+c9z or a%2Fb%2Bc9z or a%2Fb%2Bc9z, pw hunter42, raw_data.parquet"
    assert redact_text(text) == "code ***, sig *** or *** or ***, pw ***, raw_data.parquet"
    # Another place keeps its innocent values.
    assert redact_url("https://other.example/x.parquet?code=1") == (
        "https://other.example/x.parquet?code=1"
    )


def test_the_secrets_a_process_is_handed_are_masked_without_registering(monkeypatch) -> None:
    monkeypatch.setenv(secret_env("file_url"), f"https://h.example/d.parquet?code={CODE}")
    assert redact_text(f"failed with {CODE}") == "failed with ***"
    assert redact_url(f"https://h.example/d.parquet?code={CODE}") == (
        "https://h.example/d.parquet?code=***"
    )


UNCAUGHT = """
import sys, threading
from util_lib.step.logs import setup_logging
setup_logging("test")
def fail():
    raise RuntimeError(sys.argv[1])
thread = threading.Thread(target=fail)
thread.start()
thread.join()
try:
    fail()
except RuntimeError as exc:
    raise ValueError("https://alice:" + sys.argv[2] + "@h/x") from exc
"""


@pytest.mark.integration
def test_an_uncaught_exception_prints_its_traceback_redacted(tmp_path: Path) -> None:
    """The error a step prints last (what W&B's console capture records too)."""
    message = f"Max retries exceeded with url: /x.parquet?code={CODE} (Caused by X)"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ML_PIPELINE_LOG": str(tmp_path / "log")}
    done = subprocess.run(
        [sys.executable, "-c", UNCAUGHT, message, SECRET],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert CODE not in done.stderr and SECRET not in done.stderr, done.stderr
    assert "Exception in thread Thread-1 (fail):" in done.stderr
    assert (
        done.stderr.count("RuntimeError: Max retries exceeded with url: /x.parquet?code=***") == 2
    )
    assert done.stderr.strip().endswith("ValueError: https://alice:***@h/x")


def test_secrets_travel_in_the_environment_not_as_parameters(monkeypatch) -> None:
    url = f"https://{USER}:{SECRET}@h/x.parquet?token={SECRET}"
    shown, env = hide_secrets({"file_url": url, "sha256": "null"})
    assert SECRET not in str(shown) and shown["sha256"] == "null"
    assert env == {secret_env("file_url"): url}
    monkeypatch.setenv(secret_env("file_url"), url)
    assert reveal("file_url", shown["file_url"]) == url
    # A value given by hand is not swapped for the environment's.
    assert reveal("file_url", "/other.parquet") == "/other.parquet"


def test_log_lines_are_redacted(tracking: Path) -> None:
    setup_logging("test_secrets")
    logging.getLogger("x").info("fetching http://%s:%s@h/x?token=%s", USER, SECRET, SECRET)
    log = (tracking / "ml_pipeline.log").read_text()
    assert "fetching http://alice:***@h/x?token=***" in log and SECRET not in log


class _AuthHandler(BaseHTTPRequestHandler):
    """Serves the dataset only with the user's password and token; counts who got it."""

    payload = b""
    served = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        token = parse_qs(urlsplit(self.path).query).get("token")
        if self.headers.get("Authorization") != expected or token != [SECRET]:
            self.send_error(401)
            return
        type(self).served += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, format: str, *args: object) -> None:
        pass


# On the pipeline's PYTHONPATH: every Python process that starts with the pipeline's tracking
# token in its environment (each step's process, which mlflow.run starts) appends it to a file
# outside the run's folder, so the test knows the secret it must not find anywhere.
TOKEN_OBSERVER = """
import os

token = os.environ.get("MLFLOW_TRACKING_TOKEN")
if token:
    with open(os.environ["TOKEN_SEEN_FILE"], "a") as seen:
        seen.write(token + "\\n")
"""


@dataclass
class ObservedRun:
    """The module's pipeline run, the file of the tracking tokens its processes had, and how
    many times the data server handed the dataset out."""

    run: Any
    tokens_seen: Path
    served: int


@pytest.fixture(scope="module")
def observed_run(tmp_path_factory: pytest.TempPathFactory, dataset_path: Path) -> ObservedRun:
    """One pipeline (`mlflow run`, a small forest, W&B offline) with two secrets to keep: the
    data URL, which holds a password and a token and reaches get_data through the environment
    (``${oc.env:SONGS_URL}``), and the tracking token of the pipeline's own tracking server,
    which :data:`TOKEN_OBSERVER` records as the steps' processes get it. The URL's server
    serves the dataset only with both credentials."""
    base = tmp_path_factory.mktemp("secrets")
    observer = base / "observer"
    observer.mkdir()
    (observer / "sitecustomize.py").write_text(TOKEN_OBSERVER)
    handler = type("Handler", (_AuthHandler,), {"payload": dataset_path.read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/genres_mod.parquet?token={SECRET}&code={CODE}"
    try:
        run = mlflow_run(
            base / "run",
            "data.file_url='${oc.env:SONGS_URL}'",
            SMALL_FOREST,
            wandb_mode="offline",
            SONGS_URL=url,
            PYTHONPATH=str(observer),
            TOKEN_SEEN_FILE=str(base / "tokens-seen"),
        )
    finally:
        server.shutdown()
        server.server_close()
    return ObservedRun(run, base / "tokens-seen", handler.served)


def _found(run, *secrets: str) -> list[str]:
    """Where the run wrote or printed one of ``secrets``: files of its folder (store, log,
    W&B's offline files, Hydra's outputs), its stdout and stderr."""
    found = [
        str(path.relative_to(run.workdir))
        for path in run.workdir.rglob("*")
        if path.is_file() and any(s.encode() in path.read_bytes() for s in secrets)
    ]
    found += [
        name for name in ("stdout", "stderr") if any(s in getattr(run, name) for s in secrets)
    ]
    return found


@pytest.mark.e2e
def test_a_secret_data_url_is_found_nowhere(observed_run: ObservedRun) -> None:
    """``?code=`` is secret too: the URL came from the environment."""
    run = observed_run.run
    run.check()
    assert observed_run.served >= 1, "get_data never fetched with the credentials"
    assert "test_auc=" in run.result.stdout
    assert _found(run, SECRET, CODE) == [], "the secret is written or printed"
    assert (run.workdir / "wandb").is_dir() and (run.workdir / "ml_pipeline.log").is_file()
    # The redacted URL is what the records show.
    log = (run.workdir / "ml_pipeline.log").read_text()
    assert f"{USER}:***@127.0.0.1" in log and "code=***" in log


@pytest.mark.e2e
def test_the_token_reaches_the_steps_and_nothing_the_pipeline_writes(
    observed_run: ObservedRun,
) -> None:
    """The secret of the pipeline's tracking server reaches every step, and nothing the
    pipeline prints or writes holds it."""
    from tests.pipeline_runs import STEPS

    run = observed_run.run.check()
    seen = observed_run.tokens_seen
    assert seen.exists(), "no step process had MLFLOW_TRACKING_TOKEN: the pipeline served none"
    lines = seen.read_text().split()
    assert len(lines) >= len(STEPS), lines  # every step's process got it
    assert len(set(lines)) == 1  # one pipeline, one secret
    token = lines[0]
    # What a user or another program reads afterwards: the log, Hydra's outputs, W&B's
    # files, the store (its SQLite file holds every parameter and tag) and its artifacts.
    workdir = run.workdir
    log = workdir / "ml_pipeline.log"
    assert "tracking server http://127.0.0.1:" in log.read_text()
    assert any((workdir / "wandb").rglob("*.wandb"))
    assert (workdir / "mlflow.db").stat().st_size > 0
    holders = [
        str(path.relative_to(workdir))
        for path in workdir.rglob("*")
        if path.is_file() and token.encode() in path.read_bytes()
    ]
    assert holders == []
    assert token not in run.stdout + run.stderr


@pytest.mark.e2e
def test_a_secret_data_url_that_cannot_be_reached_is_found_nowhere(tmp_path: Path) -> None:
    """The download fails (a closed port): urllib3's error names the path and query, which
    reach neither the terminal, the log, MLflow's records nor W&B's files."""
    url = f"http://{USER}:{SECRET}@127.0.0.1:{free_port()}/genres_mod.parquet?code={CODE}"
    run = mlflow_run(
        tmp_path,
        "data.file_url='${oc.env:SONGS_URL}'",
        "main.execute_steps=get_data",
        wandb_mode="offline",
        SONGS_URL=url,
    )
    assert run.returncode != 0, run.stdout[-3000:]
    assert _found(run, SECRET, CODE) == [], "the secret is written or printed"
    assert list(tmp_path.glob("wandb/offline-run-*/files/output.log")), "W&B captured nothing"
    log = (tmp_path / "ml_pipeline.log").read_text()
    failure = next(line for line in log.splitlines() if "get_data failed: " in line)
    assert f"Could not download http://{USER}:***@127.0.0.1:" in failure
    assert "/genres_mod.parquet?code=***: connection failed" in failure
    assert "Connection refused" in failure
    assert "step get_data failed" in run.stdout + run.stderr


class _GitAuthHandler(BaseHTTPRequestHandler):
    """Answers git's smart-HTTP discovery: 401 without the credentials, 404 with them."""

    authorized: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        type(self).authorized.append(self.path)
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.integration
def test_git_gets_the_credentials_mlflow_only_the_plain_url(tmp_path: Path) -> None:
    """main.components_repository with a token: MLflow is given the URL without it, and git
    (whose clone MLflow runs) still authenticates, through GIT_CONFIG_* in the environment."""
    import os
    import subprocess

    from util_lib.redact import git_credentials

    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitAuthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/ml/project.git"
        plain, env = git_credentials(url, environ={})
        assert plain == f"http://127.0.0.1:{port}/ml/project.git" and SECRET not in plain
        assert env["GIT_CONFIG_COUNT"] == "1"
        base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        git = subprocess.run(
            [tools.need("git", why="fetch over HTTP"), "ls-remote", plain],
            env={**base, **env, "GIT_TERMINAL_PROMPT": "0", "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert git.returncode != 0  # the server has no repository: 404 after authenticating
        assert _GitAuthHandler.authorized, git.stderr
        assert SECRET not in git.stderr
    finally:
        server.shutdown()
        server.server_close()
    # Without credentials nothing changes; existing GIT_CONFIG_* entries are kept.
    assert git_credentials("https://github.com/o/r.git") == ("https://github.com/o/r.git", {})
    _, more = git_credentials(url, environ={"GIT_CONFIG_COUNT": "2"})
    assert more["GIT_CONFIG_COUNT"] == "3" and "GIT_CONFIG_KEY_2" in more
