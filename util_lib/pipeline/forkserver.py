"""Warm step processes: the libraries the steps import, loaded once per pipeline.

Each step is its own `mlflow run`, whose process used to import MLflow, W&B, pandas,
scikit-learn, matplotlib or pytest before its first line of work: 2.3-3 s of this 2-core
machine, six times a pipeline (``python benchmarks/step_startup.py``). ``main.py`` starts a
*fork server* (:func:`start`) as its first statement: a process of the driver's interpreter
(:mod:`util_lib.pipeline.forkserver_server`) that imports what every step imports
(:data:`COMMON_MODULES`), then what each step of the config declares in ``pipeline.yaml``
(``imports``, sent by :func:`warm`), and waits on a Unix socket; :class:`WarmUp` is its queue,
which also runs the work the steps do once per process whatever their data
(:data:`WARM_CALLS`). Every step's MLproject command is the launcher,
``python -m util_lib.step.launcher run.py ...`` (:mod:`util_lib.step.launcher`): it hands the
step to the server, which forks a child that is the step from then on, or runs it cold.

It runs by default on Linux only. macOS has ``os.fork`` and Unix sockets but CPython calls
fork unsafe there (system frameworks, ``urllib.request.getproxies``): ``UTIL_LIB_FORKSERVER=true``
turns it on. Without ``os.fork`` or ``socket.AF_UNIX`` (Windows) it never runs. Where it does
not, :func:`start` says so in one line, once per pipeline (it sets the variable to false).

The server ends with its driver, and removes its socket and folder: the driver closes its
standard input and terminates it (:meth:`ForkServer.stop`, at exit), or dies (on Linux the
server gets ``SIGTERM`` then, and its children ``SIGTERM`` when it ends).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from util_lib.names import FORKSERVER_ENV, PROJECT_ROOT
from util_lib.step.launcher import ON, enabled, platform_lacks, say, send, server_address

# MLflow's SQLAlchemy store (0.9 s): only steps that open the store themselves import it.
STORE_MODULE = "mlflow.store.tracking.sqlalchemy_store"

# What every step imports besides the standard library, loaded first; each step's own heavy
# modules are declared in pipeline.yaml (``imports``). Whatever fails to import is skipped (a
# step then imports it itself).
COMMON_MODULES = (
    "mlflow",
    "mlflow.tracking",
    "mlflow.tracking.request_header",
    "mlflow.store.tracking.rest_store",
    "mlflow.data.pandas_dataset",
    "wandb",
    "wandb.sdk.launch",  # wandb.init imports it, and IPython
    "IPython",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
)


def _draw_text() -> None:
    """Render a line of text: matplotlib loads its font and glyphs on the first figure."""
    from io import BytesIO

    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1))
    figure.text(0.5, 0.5, "warm 0.95")
    figure.savefig(BytesIO(), format="png")


def _installed_packages() -> None:
    """MLflow's map of the installed packages, which it builds (0.8 s here) for every model
    it saves (requirements_utils checks the model's requirements against it): built once."""
    from util_lib.step.private_apis import build_installed_packages_map

    build_installed_packages_map()


# What the steps compute once per process whatever their data, run after the imports: each
# when the module that needs it is among them.
WARM_CALLS = (("mlflow.sklearn", _installed_packages), ("matplotlib.figure", _draw_text))


class WarmUp:
    """The server's queue of modules to import, and of WARM_CALLS, each run right after the
    module it needs; which modules each step needs."""

    def __init__(self, modules: list[str]) -> None:
        self.queue: list[Any] = []
        self.seen: set[str] = set()
        self.done: set[Any] = set()
        self.initial = list(modules)
        self.needs: dict[str, list[str]] = {}
        self.add(modules)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def add(self, modules: list[str], step: str | None = None) -> None:
        if step:
            self.needs[step] = list(modules)
        for name in modules:
            if name not in self.seen:
                self.seen.add(name)
                self.queue.append(name)
                self.queue.extend(call for needs, call in WARM_CALLS if needs == name)

    def ready(self, step: str) -> bool:
        """Whether what every step and ``step`` need is imported (or was tried)."""
        wanted = [*self.initial, *self.needs.get(step, ())]
        return not self.queue or all(name in self.done for name in wanted)

    def first(self, step: str) -> None:
        """Import ``step``'s modules before anything else still queued."""
        wanted = set(self.needs.get(step, ()))
        calls = {call for needs, call in WARM_CALLS if needs in wanted}
        ahead = [item for item in self.queue if item in wanted or item in calls]
        self.queue = ahead + [item for item in self.queue if item not in ahead]

    def next(self) -> None:
        if self.queue:
            item = self.queue.pop(0)
            with contextlib.suppress(Exception):  # a module a step may not even need
                importlib.import_module(item) if isinstance(item, str) else item()
            self.done.add(item)


def _not_here() -> str | None:
    """Why no fork server starts on this platform, or None (Linux; elsewhere when asked for)."""
    missing = platform_lacks()
    if missing:
        return f"{missing}, which the fork server needs"
    asked = os.environ.get(FORKSERVER_ENV, "").strip().lower() in ON
    if sys.platform.startswith("linux") or asked:
        return None
    return (
        f"the fork server runs by default on Linux only, fork being unsafe on {sys.platform} "
        f"({FORKSERVER_ENV}=true turns it on)"
    )


# A Unix socket's path holds at most 107 bytes on Linux, 103 on macOS; a deep TMPDIR (pytest's,
# a CI runner's) leaves no room for it, and the server could not bind.
_SOCKET_PATH_MAX = 100


def _socket_folder() -> str:
    """A new folder for the server's socket: in the temporary folder, or in ``/tmp`` when the
    socket's path would be too long there."""
    folder = tempfile.mkdtemp(prefix="util_lib-fork-")
    # The server binds it as socket.bound, then renames it (forkserver_server): the longer name.
    if len(os.fsencode(os.path.join(folder, "socket.bound"))) <= _SOCKET_PATH_MAX:
        return folder
    os.rmdir(folder)
    return tempfile.mkdtemp(prefix="util_lib-fork-", dir="/tmp")


class ForkServer:
    """A running fork server: its process and socket; :meth:`stop` ends it."""

    def __init__(self, process: subprocess.Popen, folder: str, address: str) -> None:
        self.process, self.folder, self.address = process, folder, address

    def stop(self) -> None:
        """End the server (it removes its socket and folder), and remove them if it could not."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        # Closed stdin ends it between two imports; SIGTERM between two bytecodes of one.
        with contextlib.suppress(OSError):
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)  # the socket, under either name
        if os.environ.get(FORKSERVER_ENV) == self.address:
            del os.environ[FORKSERVER_ENV]


_started: list[ForkServer] = []  # by start(), for stop()


def warm(modules: list[str] | tuple[str, ...], step: str | None = None) -> bool:
    """Have this process's fork server (``UTIL_LIB_FORKSERVER``) import ``modules`` too, after
    what it has: those of step folder ``step``, whose launcher then waits for them. Any
    process may ask (a sweep's worker asks its parent's). False when there is no server to
    ask or it does not answer within 5 s (it may still be starting)."""
    address = server_address()
    if not enabled() or not address or platform_lacks():
        return False
    request = {"warm": {"modules": list(modules), "step": step}}
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(address)
                send(conn, request)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def start(modules: list[str] | None = None, wait: bool = True) -> ForkServer | None:
    """Start a fork server for this process's steps; set ``UTIL_LIB_FORKSERVER`` to it.

    ``modules``: what it imports first, in order (default: what every step imports;
    :func:`warm` adds each step's). ``wait``: return once it listens (else
    at once: a launcher that comes before it listens runs cold). Returns None when
    ``UTIL_LIB_FORKSERVER`` turns it off or one is already set, and where no server runs (see
    the module's docstring), which it says in one line, once: it sets the variable to false.
    """
    if not enabled() or server_address():
        return None
    why = _not_here()
    if why is not None:
        say(f"the steps start cold: {why}")
        os.environ[FORKSERVER_ENV] = "false"
        return None
    folder = _socket_folder()
    address = os.path.join(folder, "socket")
    env = dict(os.environ)
    root = str(PROJECT_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "util_lib.pipeline.forkserver_server", address]
        + list(COMMON_MODULES if modules is None else modules),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        # Its own process group in the driver's session: a terminal's Ctrl-C does not reach it,
        # and each child can join its launcher's group.
        process_group=0,
    )
    # Launchers wait in the listen queue while the server imports; bound the wait for bind().
    deadline = time.monotonic() + 10
    while wait and not os.path.exists(address) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.005)
    server = ForkServer(process, folder, address)
    if wait and not os.path.exists(address):
        process.kill()
        server.stop()
        return None
    os.environ[FORKSERVER_ENV] = address
    # It ends with this process's own end; exit_quickly runs atexit handlers too.
    atexit.register(server.stop)
    _started.append(server)
    return server


def stop() -> None:
    """Stop the fork servers this process started, and start none after: the steps then
    start cold, silently (``UTIL_LIB_FORKSERVER=false`` from here on)."""
    while _started:
        _started.pop().stop()
    os.environ[FORKSERVER_ENV] = "false"
