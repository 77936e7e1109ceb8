"""How a pipeline ends when it is stopped: every run it opened says so in the store.

- Ctrl-C or SIGTERM reaching the driver (`mlflow run` cancels its command with SIGTERM) raises
  :class:`Interrupted`, a ``KeyboardInterrupt``: ``mlflow.run`` cancels the step it waits for,
  and the driver then marks the step's run and the pipeline run (and `mlflow run`'s, when
  that is another) ``KILLED``
  (:func:`mark_interrupted`). Further signals while it does so are ignored: the cleanup is
  short and bounded (the step's launcher kills a step that outlives SIGTERM by 10 s).
- A pipeline killed outright (SIGKILL, a power cut) cannot mark anything: its runs stay
  ``RUNNING``. Each pipeline run records the process that drives it (:data:`DRIVER_TAG`); the
  next pipeline on the same store marks a ``RUNNING`` one whose driver is gone as ``KILLED``,
  with its running steps (:func:`mark_abandoned_runs`). A run driven from another host is left
  alone: from here nobody can tell whether its driver still works.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from util_lib.names import LAUNCHER_RUN_TAG

logger = logging.getLogger(__name__)

# On a pipeline run: "<host>:<pid>:<start>" of the driver process (start: Linux's start time
# in clock ticks since boot, which tells a reused pid apart; "" elsewhere).
DRIVER_TAG = "util_lib.driver"
ENDED_BY_TAG = "util_lib.ended_by"
KILLED = "KILLED"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM reached the driver; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (130 for Ctrl-C, 143 TERM)."""
        return 128 + self.signum


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """While open, the first Ctrl-C or SIGTERM raises :class:`Interrupted` in the main thread;
    later ones are ignored until the block ends (the pipeline is marking its runs). Elsewhere
    than the main thread, nothing changes (Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = (signal.SIGINT, signal.SIGTERM)

    def raise_once(signum: int, _frame: Any) -> None:
        for name in names:
            signal.signal(name, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {name: signal.signal(name, raise_once) for name in names}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(name, handler)


def mark_interrupted(
    client: Any, pipeline_run_id: str, step: str | None, since_ms: int, signum: int
) -> None:
    """Mark the pipeline run and the runs of its steps that were at work as ``KILLED``.

    ``since_ms``: when the interrupted step started (MLflow's milliseconds). A step run that
    started since then and is ``RUNNING``, or ``FAILED`` by ``mlflow.run``'s cancel, was
    stopped by the signal, not by a fault of its own.
    """
    why = f"interrupted by {signal.Signals(signum).name} during {step or 'the pipeline'}"
    for run in _children(client, pipeline_run_id):
        at_work = run.info.status == "RUNNING" or (
            run.info.status == "FAILED" and run.info.start_time >= since_ms
        )
        if at_work:
            with contextlib.suppress(Exception):  # the others are still marked
                client.set_tag(run.info.run_id, ENDED_BY_TAG, why)
                client.set_terminated(run.info.run_id, KILLED)
    # `mlflow run .`'s own run, when the pipeline run is another (--experiment-name elsewhere):
    # marked before `mlflow run` would record its cancelled command as FAILED.
    launcher = client.get_run(pipeline_run_id).data.tags.get(LAUNCHER_RUN_TAG)
    for run_id in filter(None, (launcher, pipeline_run_id)):
        client.set_tag(run_id, ENDED_BY_TAG, why)
        client.set_terminated(run_id, KILLED)


def driver_identity(pid: int | None = None) -> str:
    """``host:pid:start`` of process ``pid`` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def _start_ticks(pid: int) -> str | None:
    """The process's start time since boot (Linux), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Field 22; the command name (field 2) may hold spaces, so count after its ')'.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def driver_alive(identity: str) -> bool | None:
    """Whether the driver ``identity`` names still runs: None when this host cannot tell (it
    ran elsewhere, or this platform cannot probe a process without disturbing it)."""
    host, _, rest = identity.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or os.name != "posix":
        return None  # on Windows, os.kill(pid, 0) would terminate the process
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process holds the pid: alive, but not our driver
    now = _start_ticks(pid)
    return not (start and now is not None and now != start)


def mark_abandoned_runs(client: Any, experiment_id: str, own_run_id: str) -> list[str]:
    """Mark ``KILLED`` each ``RUNNING`` pipeline run of the experiment whose driver is gone,
    with its ``RUNNING`` step runs; return the pipeline runs marked."""
    marked = []
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{DRIVER_TAG}` != ''",
        max_results=100,
    )
    for run in runs:
        identity = run.data.tags.get(DRIVER_TAG, "")
        if run.info.run_id == own_run_id or driver_alive(identity) is not False:
            continue
        why = f"its driver ({identity}) ended without closing it; found by run {own_run_id}"
        for child in _children(client, run.info.run_id):
            if child.info.status == "RUNNING":
                client.set_tag(child.info.run_id, ENDED_BY_TAG, why)
                client.set_terminated(child.info.run_id, KILLED)
        client.set_tag(run.info.run_id, ENDED_BY_TAG, why)
        client.set_terminated(run.info.run_id, KILLED)
        marked.append(run.info.run_id)
    if marked:
        logger.warning(
            "marked KILLED %d pipeline run(s) left RUNNING by a driver that is gone: %s",
            len(marked),
            ", ".join(marked),
        )
    return marked


def _children(client: Any, run_id: str) -> list[Any]:
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=1000
    )
