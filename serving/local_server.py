"""Start a model server on 127.0.0.1 for as long as a ``with`` block lasts: the verified one
(``python -m serving serve``) or MLflow's plain ``mlflow models serve``.

Used by the serving tests and benchmarks/serving.py; by hand, run the command itself:

    python -m serving serve -m "models:/music_genre_classification@prod"
    mlflow models serve -m "models:/music_genre_classification@prod" --env-manager local
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def verified_serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """The ``python -m serving serve`` command line: files checked, then MLflow's server."""
    return [sys.executable, "-m", "serving", "serve", "-m", model_uri, "--host", host,
            "--port", str(port)]  # fmt: skip


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """The `mlflow models serve` command line for ``model_uri`` in the current environment."""
    mlflow_cli = shutil.which("mlflow")
    launcher = [mlflow_cli] if mlflow_cli else [sys.executable, "-m", "mlflow"]
    return [
        *launcher,
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
    ]


@contextmanager
def serve(
    model_uri: str,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 180.0,
    verified: bool = False,
) -> Iterator[str]:
    """Serve ``model_uri`` on a free port; yield its ``/invocations`` URL; stop it afterwards.

    Parameters
    ----------
    model_uri : str
        A model folder or a ``models:/`` URI (resolved with ``MLFLOW_TRACKING_URI`` of ``env``).
    log_path : pathlib.Path
        File that gets the server's output.
    cwd : pathlib.Path, optional
        Working directory of the server.
    env : dict, optional
        Its environment (default: this process's).
    host : str
        Interface to listen on.
    timeout : float
        Seconds to wait for ``/ping`` to answer.
    verified : bool
        ``python -m serving serve`` (every file checked against the store's digests first,
        errors without stack traces) instead of ``mlflow models serve``.

    Raises
    ------
    RuntimeError
        When the server exits or does not answer within ``timeout``, with its last output.
    """
    port = free_port(host)
    base = f"http://{host}:{port}"
    if verified:
        command = verified_serve_command(model_uri, host, port)
        # The command is this project's: it imports serving and util_lib (not the model).
        env = {**(env if env is not None else os.environ), "PYTHONPATH": str(PROJECT_ROOT)}
    else:
        command = serve_command(model_uri, host, port)
    with open(log_path, "ab") as log:
        # A session of its own: the server runs uvicorn in a child process, and stopping the
        # whole group leaves nothing behind.
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_up(process, f"{base}/ping", timeout, log_path)
        yield f"{base}/invocations"
    finally:
        _stop(process)


def _wait_until_up(process: subprocess.Popen, ping: str, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"the model server exited with code {process.returncode}:\n{_tail(log_path)}"
            )
        try:
            if requests.get(ping, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise RuntimeError(
        f"the model server did not answer {ping} in {timeout:.0f} s:\n{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL what still runs after ``grace`` seconds."""
    group = process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reaps our child; its own children are reaped by their new parent
        if not _running_in_group(group):
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=5)


def _running_in_group(group: int) -> bool:
    """Whether a process of ``group`` still runs (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: any member, zombie or not
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ")"
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _tail(log_path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"
