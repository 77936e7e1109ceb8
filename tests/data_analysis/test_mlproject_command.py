"""`mlflow run data_analysis` works as root without a flag: the MLproject's command, as MLflow
renders it, gives Jupyter ``--allow-root`` when (and only when) it runs as root.

A stand-in ``jupyter`` on PATH prints the arguments it gets (the real server is started by
test_notebooks.py's ``jupyter`` fixture, without ``--allow-root`` of its own).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data_analysis.notebook_runs import SANDBOX

pytestmark = pytest.mark.integration
OPTIONS = "--no-browser --port=8889"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def rendered(tmp_path: Path) -> str:
    """The command `mlflow run data_analysis -P jupyter_options=...` runs."""
    from mlflow.projects._project_spec import load_project

    entry_point = load_project(str(SANDBOX)).get_entry_point("main")
    return entry_point.compute_command({"jupyter_options": OPTIONS}, str(tmp_path))


@pytest.fixture
def fake_jupyter() -> Iterator[Path]:
    """A folder (readable by every user) whose ``jupyter`` prints its arguments, one a line."""
    folder = Path(tempfile.mkdtemp(prefix="fake-jupyter-"))
    folder.chmod(0o755)
    script = folder / "jupyter"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    script.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _arguments(command: str, fake_jupyter: Path, prefix: list[str]) -> list[str]:
    env = {**os.environ, "PATH": f"{fake_jupyter}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [*prefix, "bash", "-c", command],
        cwd=fake_jupyter,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_jupyter_gets_allow_root_as_root_only(rendered: str, fake_jupyter: Path) -> None:
    as_root = os.geteuid() == 0
    expected = ["notebook", *(["--allow-root"] if as_root else []), *OPTIONS.split()]
    assert _arguments(rendered, fake_jupyter, []) == expected


def test_another_user_gets_no_allow_root(rendered: str, fake_jupyter: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the command as nobody with setpriv")
    if shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("setpriv missing (apt-get install util-linux)")
        pytest.skip("setpriv missing (apt-get install util-linux)")
    assert _arguments(rendered, fake_jupyter, AS_NOBODY) == ["notebook", *OPTIONS.split()]
