"""System tools some tests need: found, or the test skips naming the tool and its install command.

A laptop without Chromium or PostgreSQL still gets a green run of the tests it can do, each
skip saying what to install. Under CI (the environment variable ``CI`` set, as CI services and
``.ci/run`` do) a missing tool is a failure instead: CI installs every tool, so its absence
there means the check silently stopped running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

# Where to get each tool on Debian/Ubuntu (what .ci/run installs) and on macOS.
INSTALL = {
    "chromium": "apt-get install chromium  (macOS: brew install --cask chromium)",
    "initdb": "apt-get install postgresql  (macOS: brew install postgresql)",
    "git": "apt-get install git  (macOS: xcode-select --install)",
    "git daemon": "apt-get install git  (git's daemon ships with git)",
    "setpriv": "apt-get install util-linux  (Linux only)",
    "uv": "pip install -r requirements.txt  (uv is pinned there)",
}


def missing(tool: str, why: str = "") -> None:
    """Skip the calling test because ``tool`` is absent; fail instead when ``CI`` is set.

    Parameters
    ----------
    tool : str
        The tool's name, as :data:`INSTALL` knows it.
    why : str, optional
        What the test needs it for, for the message.
    """
    message = f"needs {tool}{f' to {why}' if why else ''}: {INSTALL.get(tool, f'install {tool}')}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing tool is a failure)")
    pytest.skip(message)


def need(tool: str, *names: str, why: str = "", also: tuple[Path, ...] = ()) -> str:
    """The path of ``tool``'s program, found on PATH under any of ``names`` or at ``also``.

    Skips (fails under CI) through :func:`missing` when none is found.
    """
    for path in also:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    for name in names or (tool,):
        found = shutil.which(name)
        if found:
            return found
    missing(tool, why)
    raise AssertionError("unreachable")  # pytest.skip/fail raise


def need_git_daemon() -> str:
    """git's path when its ``daemon`` command is installed (``git --exec-path``/git-daemon)."""
    git = need("git", why="serve a release over git://")
    done = subprocess.run([git, "--exec-path"], capture_output=True, text=True, timeout=30)
    exec_path = Path(done.stdout.strip() or "/usr/lib/git-core")
    if not (exec_path / "git-daemon").is_file():
        missing("git daemon", "serve a release over git://")
    return git


def need_package_index(url: str = "https://pypi.org/simple/") -> None:
    """Skip (fail under CI) when the package index that pip and uv install from is unreachable."""
    url = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or url
    try:
        with urllib.request.urlopen(url, timeout=10):
            return
    except (TimeoutError, urllib.error.URLError, OSError) as error:
        message = f"needs the package index {url} to install packages ({error})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(f"{message}: connect, or set PIP_INDEX_URL/UV_INDEX_URL to a mirror")
