"""Warm step processes: the libraries the steps import, loaded once per pipeline.

Each step is its own `mlflow run`, whose process used to import MLflow, W&B, pandas,
scikit-learn, matplotlib or pytest before its first line of work: 2.3-3 s of this 2-core
machine, six times a pipeline (``python benchmarks/step_startup.py``). ``main.py`` starts a
*fork server* (:func:`start`) as its first statement: a process of the driver's interpreter
(:mod:`util_lib.forkserver_server`) that imports what every step imports
(:data:`COMMON_MODULES`), then what each step of the config declares in ``pipeline.yaml``
(``imports``, sent by :func:`warm`), and waits on a Unix socket. Every step's MLproject command
is ``python -m util_lib.forkserver run.py ...`` (or ``-m pytest ...``): this module's launcher.
It hands its command line, environment, folder, ``sys.path`` and standard streams to the
server, which forks a child that is the step from then on, in the launcher's process group.
The launcher passes on the signals sent to it alone (`mlflow run` cancelling a step) and ends
as the child ends: `mlflow run` and the driver see the step's process as before.

It runs by default on Linux only. macOS has ``os.fork`` and Unix sockets but CPython calls
fork unsafe there (system frameworks, ``urllib.request.getproxies``): ``UTIL_LIB_FORKSERVER=true``
turns it on. Without ``os.fork`` or ``socket.AF_UNIX`` (Windows) it never runs. Where it does
not, :func:`start` says so in one line, once per pipeline (it sets the variable to false).

The launcher runs the step cold, in its own process as ``python run.py`` would, when there is
no server (``UTIL_LIB_FORKSERVER`` unset or false) or when it cannot stand for this process:
another interpreter or environment (``--env-manager uv``), another copy of util_lib, other
interpreter flags, a variable the libraries read while importing, or threads in the server
that a fork would not copy safely. It says why in one line. Nothing of the steps' code or of
util_lib's (beyond the fork server's three modules and util_lib.environment) is imported before the
fork, so an edit between two steps is always seen, as the step cache assumes.

A child never outlives its launcher (it watches the socket). The server ends with its driver,
and removes its socket and folder: the driver closes its standard input and terminates it
(:meth:`ForkServer.stop`, at exit), or dies (on Linux the server gets ``SIGTERM`` then, and its
children ``SIGTERM`` when it ends). On Linux a launcher, warm or cold, gets ``SIGTERM`` when the
process that started it dies: a driver killed before it could cancel its step leaves no step
at work.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from util_lib.environment import FORKSERVER_ENV, switched_on

# STORE_MODULE (main.py) and WARM_CALLS are the warm-up module's, named here too.
from util_lib.forkserver_warmup import COMMON_MODULES, IMPORT_TIME_VARIABLES
from util_lib.forkserver_warmup import STORE_MODULE as STORE_MODULE
from util_lib.forkserver_warmup import WARM_CALLS as WARM_CALLS

_HEADER = struct.Struct("!I")

# What UTIL_LIB_FORKSERVER holds when it is a switch rather than a server's socket.
_ON = ("1", "true", "yes", "on")
_SWITCHES = ("", "0", "false", "no", "off", *_ON)


def _address() -> str:
    """The socket of the server in ``UTIL_LIB_FORKSERVER``; "" when it holds a switch."""
    value = os.environ.get(FORKSERVER_ENV, "").strip()
    return "" if value.lower() in _SWITCHES else value


def _missing() -> str | None:
    """What this platform lacks of what a fork server needs (Windows: both), or None."""
    needed = ((os, "fork"), (socket, "AF_UNIX"))
    lacks = [f"{module.__name__}.{name}" for module, name in needed if not hasattr(module, name)]
    return f"{sys.platform} has no {' and no '.join(lacks)}" if lacks else None


def _not_here() -> str | None:
    """Why no fork server starts on this platform, or None (Linux; elsewhere when asked for)."""
    missing = _missing()
    if missing:
        return f"{missing}, which the fork server needs"
    asked = os.environ.get(FORKSERVER_ENV, "").strip().lower() in _ON
    if sys.platform.startswith("linux") or asked:
        return None
    return (
        f"the fork server runs by default on Linux only, fork being unsafe on {sys.platform} "
        f"({FORKSERVER_ENV}=true turns it on)"
    )


def _identity(env: dict[str, str]) -> dict[str, Any]:
    """What must be equal between the server and a launcher for a warm child to stand for it."""
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "version": sys.version,
        "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "util_lib": str(Path(__file__).resolve().parent),
        "env": {name: env.get(name) for name in IMPORT_TIME_VARIABLES},
    }


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(data)) + data)


def _receive(conn: socket.socket) -> dict[str, Any] | None:
    """One length-prefixed JSON message, or None at the end of the stream."""
    data = b""
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[_HEADER.size :])


def end_with_parent(signum: int, parent: int | None = None) -> None:
    """Get ``signum`` when the parent process (``parent``, else the present one) dies, and at
    once if it died already: Linux's PR_SET_PDEATHSIG; nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    parent = parent or os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signum)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the call: no signal will come
        os.kill(os.getpid(), signum)


def _say(why: str) -> None:
    print(f"util_lib.forkserver: {why}", file=sys.stderr, flush=True)


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


def _request(mode: str, target: str, args: list[str]) -> dict[str, Any]:
    """What the server needs to fork a child that is this launcher's step."""
    return {
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


def _launch(mode: str, target: str, args: list[str]) -> None:
    """Hand the step to the fork server and end as it ends; run it here when that cannot be."""
    # A step ends with the process that started it (`mlflow run`, the pipeline's driver), as
    # when that process cancels it: one killed before it could (Ctrl-C reaches `mlflow run`
    # and the driver together; the first cancels the second) leaves no step at work.
    end_with_parent(signal.SIGTERM)
    address = _address()
    if not address or not enabled():
        _run_here(mode, target, args)
        return
    why = _missing()
    if why is None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(address)
            data = json.dumps(_request(mode, target, args)).encode()
            socket.send_fds(conn, [_HEADER.pack(len(data)) + data], [0, 1, 2])
            reply = _receive(conn)
        except OSError as error:
            reply = {"refused": f"fork server at {address} unreachable ({error})"}
        if reply is not None and "refused" not in reply:
            _follow(conn, int(reply["pid"]), reply.get("pgid") == os.getpgrp())
        conn.close()
        why = reply["refused"] if reply else "the fork server ended"
    _say(f"{why}; starting the step cold")
    _run_here(mode, target, args)


def _follow(conn: socket.socket, child: int, grouped: bool) -> None:
    """Stand for the warm ``child`` until it ends, then end as it did; never returns."""
    # The child is in this process's group (``grouped``): a signal to the group (Ctrl-C, a
    # kill of the group) reaches it directly, as it reached the step's own process. A signal
    # to this process alone (`mlflow run` cancelling its command with SIGTERM) does not: it is
    # passed on unless the child ends within 2 s (it got it then). Ctrl-C is never passed on
    # twice.
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
    # The child starts the step now, not before: a signal that came earlier acted on this
    # launcher as on a cold one (the child then sees it gone and ends), none since is lost.
    with contextlib.suppress(OSError):
        conn.sendall(b"g")
    reply = _receive(conn)
    conn.close()
    if reply is None:
        # The server died first: the child sees this socket close and ends too.
        _say("the fork server ended during the step")
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


# --- the driver's side ---------------------------------------------------------------------


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
    address = _address()
    if not enabled() or not address or _missing():
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
    ``UTIL_LIB_FORKSERVER`` turns it off or one is already set, and where no server runs (see
    the module's docstring), which it says in one line, once: it sets the variable to false.
    """
    if not enabled() or _address():
        return None
    why = _not_here()
    if why is not None:
        _say(f"the steps start cold: {why}")
        os.environ[FORKSERVER_ENV] = "false"
        return None
    folder = tempfile.mkdtemp(prefix="util_lib-fork-")
    address = os.path.join(folder, "socket")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        [sys.executable, "-m", "util_lib.forkserver_server", address]
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


def __getattr__(name: str) -> Any:
    """:func:`serve`, loaded only when asked for: a step's launcher never imports the server."""
    if name == "serve":
        from util_lib.forkserver_server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str]) -> None:
    """``python -m util_lib.forkserver (-m MODULE | SCRIPT) [ARGS ...]``: a step's launcher."""
    if argv[:1] == ["-m"] and len(argv) > 1:
        _launch("module", argv[1], argv[2:])
    elif argv and argv[0] != "-m":
        _launch("path", argv[0], argv[1:])
    else:
        sys.exit("usage: python -m util_lib.forkserver (SCRIPT | -m MODULE) [ARGS ...]")


if __name__ == "__main__":
    main(sys.argv[1:])
