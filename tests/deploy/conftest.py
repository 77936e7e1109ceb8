"""Fixtures of the "run it anywhere" tests: a git server holding a release tag.

The reference pipeline run of the reproducibility and uv tests, ``local_run``, is in
tests/conftest.py: test_mlflow_ui.py looks at it too.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from serving.local_server import free_port
from tests import tools
from tests.pipeline_runs import PROJECT, REPO

RELEASE_TAG = "v0.0.0-test"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass(frozen=True)
class GitServer:
    """A release of the project served by `git daemon` on 127.0.0.1."""

    url: str
    tag: str
    commit: str


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A bare clone of the project's committed HEAD, tagged, served over ``git://``."""
    tools.need_git_daemon()
    base = tmp_path_factory.mktemp("git")
    bare = base / f"{PROJECT}.git"
    _git("clone", "--bare", "--quiet", str(REPO), str(bare))
    commit = _git("-C", str(bare), "rev-parse", "HEAD")
    _git("-C", str(bare), "tag", RELEASE_TAG, commit)
    port = free_port()
    log = (base / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"git://127.0.0.1:{port}/{bare.name}"
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                ["git", "ls-remote", url, RELEASE_TAG], capture_output=True, text=True, timeout=10
            )
            if probe.returncode == 0 and commit in probe.stdout:
                break
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"git daemon did not serve {url}: {(base / 'daemon.log').read_text()}")
            time.sleep(0.2)
        yield GitServer(url=url, tag=RELEASE_TAG, commit=commit)
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        log.close()
