"""Secrets stay out: a data URL with a password and a token reaches get_data through the
environment, and is found nowhere the project prints or records."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.pipeline_runs import SMALL_FOREST, mlflow_run
from util_lib.arguments import hide_secrets, reveal, secret_env
from util_lib.logs import setup_logging
from util_lib.redact import redact_text, redact_url

SECRET = "s3cr3t"
USER = "alice"


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


@pytest.fixture
def secret_url(dataset_path: Path) -> Iterator[str]:
    handler = type("Handler", (_AuthHandler,), {"payload": dataset_path.read_bytes()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield f"http://{USER}:{SECRET}@127.0.0.1:{port}/genres_mod.parquet?token={SECRET}"
    finally:
        server.shutdown()
        server.server_close()
        assert handler.served >= 1, "get_data never fetched with the credentials"


@pytest.mark.e2e
def test_a_secret_data_url_is_found_nowhere(tmp_path: Path, secret_url: str) -> None:
    run = mlflow_run(
        tmp_path,
        "data.file_url='${oc.env:SONGS_URL}'",
        SMALL_FOREST,
        wandb_mode="offline",
        SONGS_URL=secret_url,
    )
    run.check()
    assert "test_auc=" in run.result.stdout
    found = [
        str(path.relative_to(tmp_path))
        for path in tmp_path.rglob("*")
        if path.is_file() and SECRET.encode() in path.read_bytes()
    ]
    assert found == [], f"the secret is written in {found}"
    assert SECRET not in run.result.stdout + run.result.stderr
    assert (tmp_path / "wandb").is_dir() and (tmp_path / "ml_pipeline.log").is_file()
    # The redacted URL is what the records show.
    assert f"{USER}:***@127.0.0.1" in (tmp_path / "ml_pipeline.log").read_text()


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
            ["git", "ls-remote", plain],
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
