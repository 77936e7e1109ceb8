"""The fork server's process (:mod:`util_lib.pipeline.forkserver` says what it is for), started
by :func:`util_lib.pipeline.forkserver.start`:
``python -m util_lib.pipeline.forkserver_server SOCKET [MODULE ...]``.

It imports the warm modules one by one between requests and forks a child per launcher, which
becomes its step. Before each fork it checks the threads it holds (:func:`unsafe_threads`: a
fork copies only the calling thread); in a state it does not know it refuses the launcher, with
the reason, and the launcher runs its step cold. No client can hold it up: requests are read
without blocking, alongside one another and the forks, and a connection that has not sent a
whole request :data:`REQUEST_SECONDS` after its accept is dropped. It removes its socket and
folder however it ends: its standard input closed, its driver gone, or ``SIGTERM``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from util_lib.pipeline.forkserver import WarmUp
from util_lib.step.launcher import HEADER, end_with_parent, identity, run_here, send

# Seconds a connection has, from its accept, to send a whole request.
REQUEST_SECONDS = 5.0

# Native threads a fork leaves behind safely, by the name they give themselves (Linux's
# /proc/self/task/*/comm): pyarrow's jemalloc background thread (jemalloc's fork handlers).
SAFE_NATIVE_THREADS = ("jemalloc_bg_thd",)


def unsafe_threads() -> str | None:
    """The threads of this process that a fork would not copy safely, described; None if none.

    Allowed: the main thread; native threads (Linux) named in :data:`SAFE_NATIVE_THREADS`; and
    unnamed ones (a thread that never names itself shows its creator's name, the process's)
    up to OpenBLAS's workers, ``num_threads - 1`` per OpenBLAS pthreads pool (threadpoolctl),
    which OpenBLAS stops before a fork (``pthread_atfork``). Anything else is unknown: another
    Python thread, another name, more unnamed threads (an OpenMP pool: not fork-safe).
    """
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        return "Python thread " + ", ".join(map(repr, others))
    tasks = Path("/proc/self/task")
    if not sys.platform.startswith("linux") or not tasks.is_dir():
        return None
    main = (tasks / str(os.getpid()) / "comm").read_text().rstrip("\n")
    names = []
    for task in tasks.iterdir():
        with contextlib.suppress(OSError):  # ended meanwhile
            if task.name != str(os.getpid()):
                names.append((task / "comm").read_text().rstrip("\n"))
    unknown = sorted({name for name in names if name != main} - set(SAFE_NATIVE_THREADS))
    if unknown:
        return "native thread " + ", ".join(map(repr, unknown))
    unnamed = names.count(main)
    workers = _openblas_workers() if unnamed else 0
    if unnamed > workers:
        return f"{unnamed} unnamed native threads, OpenBLAS's workers being {workers}"
    return None


def _openblas_workers() -> int:
    """How many worker threads the loaded OpenBLAS libraries (numpy's, scipy's) may hold."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 0
    return sum(
        max(int(pool["num_threads"]) - 1, 0)
        for pool in threadpool_info()
        if pool.get("internal_api") == "openblas" and pool.get("threading_layer") == "pthreads"
    )


# --- in the forked child -------------------------------------------------------------------


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
        # The step ends with the server, which ends with its driver (an interrupted step may
        # be retrying calls to the driver's tracking server).
        end_with_parent(signal.SIGTERM, server)
        # The launcher's process group; its own when that cannot be (another session).
        try:
            os.setpgid(0, int(request["pgid"]))
        except (OSError, KeyError, ValueError):
            os.setpgid(0, 0)
        own_group = os.getpgrp() == os.getpid()
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target_fd, fd in enumerate(fds):
            os.dup2(fd, target_fd)
            os.close(fd)
        out, err = request["stdout"], request["stderr"]  # line buffering, write-through
        sys.stdout.reconfigure(line_buffering=out[0], write_through=out[1])
        sys.stderr.reconfigure(line_buffering=err[0], write_through=err[1])
        os.environ.clear()
        os.environ.update(request["env"])
        # An import may have cached the server's temporary folder (wandb's does): the step's
        # is its own TMPDIR, read again on first use.
        tempfile.tempdir = None
        os.chdir(request["cwd"])
        sys.path[:] = request["path"]
        importlib.invalidate_caches()
        forget_driver_modules()
        send(conn, {"pid": os.getpid(), "pgid": os.getpgrp()})
        if not conn.recv(1):  # the launcher's go-ahead: its signals are passed on from now
            return
        threading.Thread(target=_watch_launcher, args=(conn, own_group), daemon=True).start()
        code = _run_step(request)
        from util_lib.step.process_exit import exit_quickly

        exit_quickly(code)
    finally:
        _flush()
        os._exit(code)


def forget_driver_modules() -> None:
    """In the child: forget the server's own modules, the driver's (``util_lib.pipeline``), as a
    step's process never loads them: the step's record of the files it loaded
    (:mod:`util_lib.step.provenance`) then lists only what the step imports itself, and an edit
    of the driver's code reruns no step. A step that imports one loads it afresh."""
    for name in [m for m in sys.modules if m.split(".")[:2] == ["util_lib", "pipeline"]]:
        del sys.modules[name]


def _run_step(request: dict[str, Any]) -> int:
    """Run the step as the interpreter would run it; its exit code (or die of its Ctrl-C)."""
    try:
        run_here(request["mode"], request["target"], request["args"])
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # noqa: BLE001 - what the interpreter does with any uncaught one
        sys.excepthook(*sys.exc_info())
    else:
        return 0
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


# --- the server ----------------------------------------------------------------------------


def _refusal(request: dict[str, Any]) -> str | None:
    """Why this server cannot stand for the launcher, or None."""
    mine, theirs = identity(dict(os.environ)), request.get("identity", {})
    for key in ("executable", "prefix", "version", "flags", "warnoptions", "util_lib"):
        if mine[key] != theirs.get(key):
            return f"{key} differs from the fork server's ({theirs.get(key)!r})"
    for name, value in mine["env"].items():
        if theirs.get("env", {}).get(name) != value:
            return f"${name} differs from the fork server's"
    return None


class _Reading:
    """A connection whose request is still coming: what came so far, until its deadline."""

    def __init__(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self.conn, self.data, self.fds = conn, b"", []
        self.deadline = time.monotonic() + REQUEST_SECONDS
        self.request: dict[str, Any] | None = None

    def read(self) -> bool:
        """Read what came; True once the request is whole (:attr:`request`) or never will be."""
        try:
            chunk, fds, _flags, _addr = socket.recv_fds(self.conn, 1 << 20, 3)
        except BlockingIOError:
            return False
        except OSError:
            return True
        self.fds += fds
        self.data += chunk
        if len(self.data) >= HEADER.size:
            end = HEADER.size + HEADER.unpack_from(self.data)[0]
            if len(self.data) >= end:
                with contextlib.suppress(ValueError):
                    request = json.loads(self.data[HEADER.size : end])
                    self.request = request if isinstance(request, dict) else None
                return True
        return not chunk

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.conn.close()


class _Server:
    """The server's state: its socket, the requests being read or held, its children."""

    def __init__(self, address: str, modules: list[str]) -> None:
        self.address, self.pid, self.driver = address, os.getpid(), os.getppid()
        # End with the driver, socket and folder removed, even if it dies before closing stdin.
        signal.signal(signal.SIGTERM, self._on_sigterm)
        end_with_parent(signal.SIGTERM)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under another name, listening, then renamed: the driver waits for the address to
        # exist, and a connect between bind() and listen() would be refused.
        self.listener.bind(address + ".bound")
        self.listener.listen(16)
        os.replace(address + ".bound", address)
        self.listener.setblocking(False)
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.children: dict[int, socket.socket] = {}
        self.held: list[tuple[socket.socket, dict[str, Any], list[int]]] = []
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_read, selectors.EVENT_READ, "reap")
        self.selector.register(sys.stdin, selectors.EVENT_READ, "driver")
        self.warm_up = WarmUp(modules)

    def run(self) -> NoReturn:
        while True:
            events = self.selector.select(timeout=0 if self.warm_up else 1.0)
            if os.getppid() != self.driver:  # the driver is gone, whatever became of our stdin
                self.end()
            for key, _ in events:
                self._handle(key)
            for key in list(self.selector.get_map().values()):
                if isinstance(key.data, _Reading) and key.data.deadline < time.monotonic():
                    self.selector.unregister(key.fileobj)
                    key.data.close()  # a client that holds its request back
            _reap(self.children)
            self.warm_up.next()
            for held in [h for h in self.held if self.warm_up.ready(Path(h[1]["cwd"]).name)]:
                self.held.remove(held)
                self._fork(*held)

    def _handle(self, key: selectors.SelectorKey) -> None:
        if key.data == "driver":
            if not os.read(key.fd, 1024):
                self.end()
        elif key.data == "reap":
            with contextlib.suppress(BlockingIOError):
                self.wake_read.recv(4096)
        elif key.data == "accept":
            with contextlib.suppress(BlockingIOError):
                conn, _ = self.listener.accept()
                self.selector.register(conn, selectors.EVENT_READ, _Reading(conn))
        elif key.data.read():
            self.selector.unregister(key.fileobj)
            self._answer(key.data)

    def _answer(self, reading: _Reading) -> None:
        """Take a whole request: a :func:`warm` one's modules, or a launcher's step."""
        request = reading.request
        if request is not None and "warm" in request:
            with contextlib.suppress(KeyError, TypeError):
                modules, step = request["warm"]["modules"], request["warm"]["step"]
                self.warm_up.add([str(m) for m in modules], step)
            reading.close()
            return
        why = _refusal(request) if request is not None else "no request"
        if why is not None or len(reading.fds) != 3:
            self._refuse(reading.conn, reading.fds, why or "no standard streams")
            return
        reading.conn.setblocking(True)
        step = Path(request["cwd"]).name
        if self.warm_up.ready(step):
            self._fork(reading.conn, request, reading.fds)
        else:
            self.warm_up.first(step)
            self.held.append((reading.conn, request, reading.fds))

    def _refuse(self, conn: socket.socket, fds: list[int], why: str) -> None:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            conn.settimeout(REQUEST_SECONDS)
            send(conn, {"refused": why})
        conn.close()

    def _fork(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        threads = unsafe_threads()
        if threads is not None:
            self._refuse(conn, fds, f"the fork server holds threads unsafe to fork ({threads})")
            return
        _flush()
        pid = os.fork()
        if pid == 0:
            self._close_in_child()
            _become_step(conn, request, fds, self.pid)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn

    def _close_in_child(self) -> None:
        """Let go of what is the server's: the other clients then see it alone end."""
        signal.set_wakeup_fd(-1)
        for key in self.selector.get_map().values():
            if isinstance(key.data, _Reading):
                key.data.close()
        self.selector.close()
        for sock in (self.listener, self.wake_read, self.wake_write, *self.children.values()):
            sock.close()
        for other, _, other_fds in self.held:
            other.close()
            for fd in other_fds:
                os.close(fd)

    def end(self) -> NoReturn:
        """Remove the socket and the folder start() made for it, and exit."""
        with contextlib.suppress(OSError):
            os.unlink(self.address)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.address))
        os._exit(0)

    def _on_sigterm(self, signum: int, _frame: Any) -> None:
        if os.getpid() != self.pid:  # a child not yet its step dies of it, as the step would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.end()


def serve(address: str, modules: list[str]) -> NoReturn:
    """Listen on ``address`` and fork a step for each launcher until stdin ends.

    The warm modules are imported one by one between the launchers' requests; :func:`warm`
    adds the modules of a step. A step's launcher that comes before its modules are loaded
    waits for them (they are imported next), then is forked: the child does not import them
    a second time beside the server.
    """
    _Server(address, modules).run()


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
                send(conn, {"status": status})
            conn.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
