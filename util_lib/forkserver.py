"""Warm step processes: the libraries the steps import, loaded once per pipeline.

Each step is its own `mlflow run`, so each step process used to import MLflow, W&B, pandas,
scikit-learn, matplotlib or pytest before its first line of work: 2.3-3 s of this 2-core
machine, six times a pipeline (``python benchmarks/step_startup.py``). ``main.py`` starts a
*fork server* (:func:`start`) as its first statement: a process of the driver's interpreter
that imports what every step imports (:data:`COMMON_MODULES`), then what each step of the
config declares in ``pipeline.yaml`` (``imports``, sent by :func:`warm`), while the driver
checks the config and opens its run, and waits on a Unix socket. Every step's MLproject
command is ``python -m util_lib.forkserver run.py ...`` (check_data's ``... -m pytest ...``):
this module's launcher. It hands its command line, environment, working directory,
``sys.path`` and standard streams to the server, which forks a child that is the step from
then on: same arguments, environment, folder, file descriptors and process group (Ctrl-C and
a kill of the group reach it directly). The launcher passes on the signals sent to it alone
(`mlflow run` cancelling a step) and exits with the child's status, or dies of its signal:
`mlflow run` and the driver see the step's process as before. A launcher that comes before
its step's modules are loaded waits for them. Multiprocessing's forkserver start method does
the same for its workers.

The launcher runs the step cold, in its own process as ``python run.py`` would, when there
is no server (a step run on its own: ``UTIL_LIB_FORKSERVER`` unset or ``false``) or when the
server cannot stand for this process: another interpreter or environment
(``--env-manager uv``), another copy of util_lib (steps fetched from a git repository),
different interpreter flags or a variable the libraries read while importing. It says so in
one line. Nothing of the steps' own code or of util_lib's (beyond this module) is imported
before the fork, so an edit between two steps is always seen, as the step cache assumes.

A child never outlives its launcher: it watches the socket and ends when the launcher is gone
(even by ``SIGKILL``). The server ends when its driver ends: the driver closes the server's
standard input (:meth:`ForkServer.stop`, at exit), or dies, which closes it too, and on Linux
the server also gets ``SIGKILL`` when its parent dies, and its children ``SIGTERM``. A
launcher, warm or cold, gets ``SIGTERM`` when the process that started it dies: a driver
killed before it could cancel its step (Ctrl-C reaches `mlflow run` and the driver together,
and `mlflow run` cancels the driver) leaves no step at work.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from util_lib.environment import FORKSERVER_ENV, switched_on

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
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()


# What the steps compute once per process whatever their data, run after the imports: each
# when the module that needs it is among them.
WARM_CALLS = (("mlflow.sklearn", _installed_packages), ("matplotlib.figure", _draw_text))

# Variables that libraries read while being imported: a step whose value differs from the
# server's starts cold (the warm modules would not be what its own imports would give).
IMPORT_TIME_VARIABLES = (
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "MPLBACKEND",
    "MPLCONFIGDIR",
    "HOME",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "SCIPY_ARRAY_API",
)

_HEADER = struct.Struct("!I")


def _import_env(env: dict[str, str]) -> dict[str, str | None]:
    return {name: env.get(name) for name in IMPORT_TIME_VARIABLES}


def _identity(env: dict[str, str]) -> dict[str, Any]:
    """What must be equal between the server and a launcher for a warm child to stand for it."""
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "version": sys.version,
        "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "util_lib": str(Path(__file__).resolve().parent),
        "env": _import_env(env),
    }


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(data)) + data)


def _receive(conn: socket.socket, first: bytes = b"") -> dict[str, Any] | None:
    """One length-prefixed JSON message, or None at the end of the stream."""
    data = first
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[_HEADER.size :])


def _end_with_parent(signum: int, parent: int | None = None) -> None:
    """Get ``signum`` when the parent process (``parent``, else the present one) dies (Linux's
    PR_SET_PDEATHSIG; not elsewhere), and at once if it died already."""
    parent = parent or os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signum)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the call: no signal will come
        os.kill(os.getpid(), signum)


# --- the launcher (a step's MLproject command) -------------------------------------------


def _run_here(mode: str, target: str, args: list[str]) -> None:
    """Run the step in this process, as ``python <target>`` or ``python -m <target>`` would."""
    import runpy

    if mode == "module":
        sys.argv = [target, *args]
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        if not os.path.isfile(target):
            # As `python run.py` says it, without runpy's traceback.
            sys.exit(f"{sys.executable}: can't open file {os.path.abspath(target)!r}: no such file")
        sys.argv = [target, *args]
        sys.path[0] = str(Path(target).resolve().parent)
        runpy.run_path(target, run_name="__main__")


def _launch(mode: str, target: str, args: list[str]) -> None:
    """Hand the step to the fork server and end as it ends; run it here when that cannot be."""
    # A step ends with the process that started it (`mlflow run`, the pipeline's driver), as
    # when that process cancels it: one killed before it could (Ctrl-C reaches `mlflow run`
    # and the driver together; the first cancels the second) leaves no step at work.
    _end_with_parent(signal.SIGTERM)
    address = os.environ.get(FORKSERVER_ENV, "")
    if not address or not enabled():
        _run_here(mode, target, args)
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
        request = {
            "mode": mode,
            "target": target,
            "args": args,
            "cwd": os.getcwd(),
            "path": [str(Path(target).resolve().parent) if mode == "path" else os.getcwd()]
            + sys.path[1:],
            "env": dict(os.environ),
            "identity": _identity(dict(os.environ)),
            "stdout": [sys.stdout.line_buffering, sys.stdout.write_through],
            "stderr": [sys.stderr.line_buffering, sys.stderr.write_through],
            "pgid": os.getpgrp(),
        }
        data = json.dumps(request).encode()
        socket.send_fds(conn, [_HEADER.pack(len(data)) + data], [0, 1, 2])
        reply = _receive(conn)
    except OSError as error:
        reply = {"refused": f"fork server at {address} unreachable ({error})"}
    if reply is None or "refused" in reply:
        conn.close()
        why = reply["refused"] if reply else "the fork server ended"
        print(f"util_lib.forkserver: {why}; starting the step cold", file=sys.stderr, flush=True)
        _run_here(mode, target, args)
        return
    child = int(reply["pid"])
    # The child is in this process's group: a signal to the group (Ctrl-C, a kill of the
    # group) reaches it directly, as it reached the step's own process. A signal to this
    # process alone (`mlflow run` cancelling its command with SIGTERM) does not: it is passed
    # on unless the child ends within 2 s (it got it then). Ctrl-C is never passed on twice.
    grouped = reply.get("pgid") == os.getpgrp()
    later: list[int] = []

    def pass_on(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
        if signum == signal.SIGTERM:
            # Terminate, then kill: a step still at work 10 s after (say, retrying calls to
            # the pipeline's tracking server, which ended with the driver) is killed.
            later[:] = [signal.SIGKILL]
            signal.alarm(10)

    def forward(signum: int, _frame: Any) -> None:
        if not grouped:
            pass_on(signum)
        elif signum != signal.SIGINT:
            later[:] = [signum]
            signal.alarm(2)

    def on_alarm(_signum: int, _frame: Any) -> None:
        if later:
            pass_on(later.pop())

    signal.signal(signal.SIGALRM, on_alarm)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    reply = _receive(conn)
    conn.close()
    if reply is None:
        # The server died first: the child sees this socket close and ends too.
        print("util_lib.forkserver: the fork server ended during the step", file=sys.stderr)
        os._exit(1)
    status = int(reply["status"])
    if os.WIFSIGNALED(status):
        # Die of the same signal, as the step's own process would have.
        signum = os.WTERMSIG(status)
        if signum not in (signal.SIGKILL, signal.SIGSTOP):  # their handlers cannot change
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)
    os._exit(os.waitstatus_to_exitcode(status))


# --- the server ----------------------------------------------------------------------------


def _watch_launcher(conn: socket.socket, own_group: bool) -> None:
    """In the child: end (with its process group if it leads one) when the launcher is gone."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    if own_group:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _become_step(conn: socket.socket, request: dict[str, Any], fds: list[int], server: int) -> None:
    """In the forked child: take the launcher's place and run its step; never returns."""
    code = 1
    try:
        # The server ends with its driver: so does the step, whatever it was doing (a step
        # interrupted by Ctrl-C may be retrying calls to the driver's tracking server).
        _end_with_parent(signal.SIGTERM, server)
        # The launcher's process group, as the step's own process was in; a group of its own
        # when that cannot be (a launcher in another session).
        try:
            os.setpgid(0, int(request["pgid"]))
        except (OSError, KeyError, ValueError):
            os.setpgid(0, 0)
        own_group = os.getpgrp() == os.getpid()
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        for target_fd, fd in enumerate(fds):
            os.dup2(fd, target_fd)
            os.close(fd)
        for stream, (line_buffering, write_through) in (
            (sys.stdout, request["stdout"]),
            (sys.stderr, request["stderr"]),
        ):
            stream.reconfigure(line_buffering=line_buffering, write_through=write_through)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[:] = request["path"]
        importlib.invalidate_caches()
        threading.Thread(target=_watch_launcher, args=(conn, own_group), daemon=True).start()
        _send(conn, {"pid": os.getpid(), "pgid": os.getpgrp()})
        try:
            _run_here(request["mode"], request["target"], request["args"])
            code = 0
        except SystemExit as stop:
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            sys.excepthook(*sys.exc_info())
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001 - what the interpreter does with any uncaught one
            sys.excepthook(*sys.exc_info())
            code = 1
        from util_lib.process_exit import exit_quickly

        exit_quickly(code)
    finally:
        _flush()
        os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _refusal(request: dict[str, Any]) -> str | None:
    """Why this server cannot stand for the launcher, or None."""
    mine, theirs = _identity(dict(os.environ)), request.get("identity", {})
    for key in ("executable", "prefix", "version", "flags", "warnoptions", "util_lib"):
        if mine[key] != theirs.get(key):
            return f"{key} differs from the fork server's ({theirs.get(key)!r})"
    for name, value in mine["env"].items():
        if theirs.get("env", {}).get(name) != value:
            return f"${name} differs from the fork server's"
    return None


def serve(address: str, modules: list[str]) -> None:
    """Listen on ``address`` and fork a step for each launcher until stdin ends.

    The warm modules are imported one by one between the launchers' requests; :func:`warm`
    adds the modules of a step. A step's launcher that comes before its modules are loaded
    waits for them (they are imported next), then is forked: the child does not import them
    a second time beside the server.
    """
    import selectors

    # End with the driver even if it is killed before it can close our stdin.
    _end_with_parent(signal.SIGKILL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_read, selectors.EVENT_READ, "reap")
    selector.register(sys.stdin, selectors.EVENT_READ, "driver")
    warm_up = _WarmUp(modules)
    held: list[tuple[socket.socket, dict[str, Any], list[int]]] = []

    def fork(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        _flush()
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            selector.close()
            listener.close()
            for other, _, other_fds in held:
                other.close()
                for fd in other_fds:
                    os.close(fd)
            _become_step(conn, request, fds, server)
        for fd in fds:
            os.close(fd)
        children[pid] = conn

    driver = os.getppid()
    while True:
        events = selector.select(timeout=0 if warm_up else 1.0)
        if os.getppid() != driver:  # the driver is gone, whatever became of our stdin
            events = [(key, 0) for key in selector.get_map().values() if key.data == "driver"]
        for key, _ in events:
            if key.data == "driver":
                if os.getppid() != driver or not os.read(key.fd, 1024):
                    listener.close()
                    with contextlib.suppress(OSError):
                        os.unlink(address)
                    os._exit(0)
            elif key.data == "reap":
                with contextlib.suppress(BlockingIOError):
                    wake_read.recv(4096)
            elif key.data == "accept":
                conn, _ = listener.accept()
                conn.setblocking(True)
                accepted = _accept(conn, warm_up)
                if accepted is not None:
                    step = Path(accepted[1]["cwd"]).name
                    if warm_up.ready(step):
                        fork(*accepted)
                    else:
                        warm_up.first(step)
                        held.append(accepted)
        _reap(children)
        warm_up.next()
        for request in [h for h in held if warm_up.ready(Path(h[1]["cwd"]).name)]:
            held.remove(request)
            fork(*request)


class _WarmUp:
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


def _accept(
    conn: socket.socket, warm_up: _WarmUp
) -> tuple[socket.socket, dict[str, Any], list[int]] | None:
    """Read a request: add the modules of a :func:`warm` one (None); return a launcher's, or
    refuse it (None) when this server cannot stand for it."""
    try:
        first, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
        request = _receive(conn, first)
    except (OSError, ValueError):
        conn.close()
        return None
    if request is not None and "warm" in request:
        with contextlib.suppress(KeyError, TypeError):
            warm_up.add([str(m) for m in request["warm"]["modules"]], request["warm"]["step"])
        conn.close()
        return None
    why = _refusal(request) if request is not None else "no request"
    if why is not None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            _send(conn, {"refused": why or "no standard streams"})
        conn.close()
        return None
    return conn, request, fds


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                _send(conn, {"status": status})
            conn.close()


# --- the driver's side ---------------------------------------------------------------------


class ForkServer:
    """A running fork server: its process and socket; :meth:`stop` ends it."""

    def __init__(self, process: subprocess.Popen, folder: str, address: str) -> None:
        self.process, self.folder, self.address = process, folder, address

    def stop(self) -> None:
        """Close the server's input (it exits at once) and remove its socket."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)
        if os.environ.get(FORKSERVER_ENV) == self.address:
            del os.environ[FORKSERVER_ENV]


_started: list[ForkServer] = []  # by start(), for stop()


def warm(modules: list[str] | tuple[str, ...], step: str | None = None) -> bool:
    """Have this process's fork server (``UTIL_LIB_FORKSERVER``) import ``modules`` too, after
    what it has: those of step folder ``step``, whose launcher then waits for them. Any
    process may ask (a sweep's worker asks its parent's). False when there is no server to
    ask or it does not answer within 5 s (it may still be starting)."""
    address = os.environ.get(FORKSERVER_ENV, "")
    if not enabled() or not address:
        return False
    request = {"warm": {"modules": list(modules), "step": step}}
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(address)
                _send(conn, request)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)


def enabled() -> bool:
    """False when ``UTIL_LIB_FORKSERVER`` says no (0, false, no, off)."""
    return switched_on(FORKSERVER_ENV)


def start(modules: list[str] | None = None, wait: bool = True) -> ForkServer | None:
    """Start a fork server for this process's steps; set ``UTIL_LIB_FORKSERVER`` to it.

    ``modules``: what it imports first, in order (default: what every step imports;
    :func:`warm` adds each step's). ``wait``: return once it listens (else
    at once: a launcher that comes before it listens runs cold). Returns None when
    ``UTIL_LIB_FORKSERVER`` turns it off or one is already set.
    """
    if not enabled() or os.environ.get(FORKSERVER_ENV):
        return None
    folder = tempfile.mkdtemp(prefix="util_lib-fork-")
    address = os.path.join(folder, "socket")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "util_lib.forkserver", "--serve", address]
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
    if wait and not os.path.exists(address):
        process.kill()
        process.wait()
        return None
    os.environ[FORKSERVER_ENV] = address
    server = ForkServer(process, folder, address)
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


def main(argv: list[str]) -> None:
    """``python -m util_lib.forkserver (--serve ADDR [MODULE ...] | -m MODULE ... | SCRIPT)``."""
    if argv[:1] == ["--serve"]:
        serve(argv[1], argv[2:])
    elif argv[:1] == ["-m"]:
        _launch("module", argv[1], argv[2:])
    elif argv:
        _launch("path", argv[0], argv[1:])
    else:
        sys.exit("usage: python -m util_lib.forkserver (SCRIPT | -m MODULE) [ARGS ...]")


if __name__ == "__main__":
    main(sys.argv[1:])
