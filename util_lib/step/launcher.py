"""The launcher of a step: what every step's MLproject command runs,
``python -m util_lib.step.launcher run.py ...`` (or ``-m pytest ...``).

It hands its command line, environment, folder, ``sys.path`` and standard streams to the
pipeline's fork server (:mod:`util_lib.pipeline.forkserver` says what it is for), whose socket
``UTIL_LIB_FORKSERVER`` names; the server forks a child that is the step from then on, in the
launcher's process group. The launcher passes on the signals sent to it alone (`mlflow run`
cancelling a step) and ends as the child ends: `mlflow run` and the driver see the step's
process as before.

It runs the step cold, in its own process as ``python run.py`` would, when there is no server
(``UTIL_LIB_FORKSERVER`` unset or false) or when the server cannot stand for this process:
another interpreter or environment (``--env-manager uv``), another copy of util_lib, other
interpreter flags, a variable the libraries read while importing
(:data:`IMPORT_TIME_VARIABLES`), or threads in the server that a fork would not copy safely.
It says why in one line. It imports nothing but the standard library and
:mod:`util_lib.names`, so that a cold step pays nothing for it; the server's child forgets the
server's own modules, so that an edit between two steps is always seen, as the step cache
assumes.

A child never outlives its launcher (it watches the socket). On Linux a launcher, warm or
cold, gets ``SIGTERM`` when the process that started it dies: a driver killed before it could
cancel its step leaves no step at work. The message protocol (:data:`HEADER`, :func:`send`,
:func:`receive`) and how a step runs here (:func:`run_here`) are shared with the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from util_lib.names import FORKSERVER_ENV, switched_on

HEADER = struct.Struct("!I")

# What UTIL_LIB_FORKSERVER holds when it is a switch rather than a server's socket.
ON = ("1", "true", "yes", "on")
_SWITCHES = ("", "0", "false", "no", "off", *ON)

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


def server_address() -> str:
    """The socket of the server in ``UTIL_LIB_FORKSERVER``; "" when it holds a switch."""
    value = os.environ.get(FORKSERVER_ENV, "").strip()
    return "" if value.lower() in _SWITCHES else value


def platform_lacks() -> str | None:
    """What this platform lacks of what a fork server needs (Windows: both), or None."""
    needed = ((os, "fork"), (socket, "AF_UNIX"))
    lacks = [f"{module.__name__}.{name}" for module, name in needed if not hasattr(module, name)]
    return f"{sys.platform} has no {' and no '.join(lacks)}" if lacks else None


def identity(env: dict[str, str]) -> dict[str, Any]:
    """What must be equal between the server and a launcher for a warm child to stand for it."""
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "version": sys.version,
        "flags": list(sys.flags),
        "warnoptions": list(sys.warnoptions),
        "util_lib": str(Path(__file__).resolve().parents[1]),
        "env": {name: env.get(name) for name in IMPORT_TIME_VARIABLES},
    }


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    conn.sendall(HEADER.pack(len(data)) + data)


def receive(conn: socket.socket) -> dict[str, Any] | None:
    """One length-prefixed JSON message, or None at the end of the stream."""
    data = b""
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[HEADER.size :])


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


def say(why: str) -> None:
    print(f"util_lib.forkserver: {why}", file=sys.stderr, flush=True)


# --- the launcher (a step's MLproject command) -------------------------------------------


def run_here(mode: str, target: str, args: list[str]) -> None:
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
        "identity": identity(dict(os.environ)),
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
    address = server_address()
    if not address or not enabled():
        run_here(mode, target, args)
        return
    why = platform_lacks()
    if why is None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(address)
            data = json.dumps(_request(mode, target, args)).encode()
            socket.send_fds(conn, [HEADER.pack(len(data)) + data], [0, 1, 2])
            reply = receive(conn)
        except OSError as error:
            reply = {"refused": f"fork server at {address} unreachable ({error})"}
        if reply is not None and "refused" not in reply:
            _follow(conn, int(reply["pid"]), reply.get("pgid") == os.getpgrp())
        conn.close()
        why = reply["refused"] if reply else "the fork server ended"
    say(f"{why}; starting the step cold")
    run_here(mode, target, args)


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
    reply = receive(conn)
    conn.close()
    if reply is None:
        # The server died first: the child sees this socket close and ends too.
        say("the fork server ended during the step")
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


def enabled() -> bool:
    """False when ``UTIL_LIB_FORKSERVER`` says no (0, false, no, off)."""
    return switched_on(FORKSERVER_ENV)


def main(argv: list[str]) -> None:
    """``python -m util_lib.step.launcher (-m MODULE | SCRIPT) [ARGS ...]``: a step's launcher."""
    if argv[:1] == ["-m"] and len(argv) > 1:
        _launch("module", argv[1], argv[2:])
    elif argv and argv[0] != "-m":
        _launch("path", argv[0], argv[1:])
    else:
        sys.exit("usage: python -m util_lib.step.launcher (SCRIPT | -m MODULE) [ARGS ...]")


if __name__ == "__main__":
    main(sys.argv[1:])
