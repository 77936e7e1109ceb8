"""What reaches the terminal while the pipeline runs: the driver's progress lines and summary
only, unless ``main.verbose``.

Quiet (the default), each step's whole output (its log lines, check_data's test report, what
MLflow prints as it launches the step) is appended to the pipeline's log file instead of the
terminal: :func:`steps_output_to` points the driver's standard streams, which ``mlflow.run``'s
process inherits, at the log while the step works. A step whose standard error is the log file
then writes its log lines there once (:func:`util_lib.step.logs.setup_logging`). The driver's
own lines (:func:`say`, the heartbeat included) still reach the terminal, through a copy of its
standard output taken before. When a step fails, :func:`last_lines` gives the end of what it
wrote, for the terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

# The terminal while the steps' output goes to the log (None: sys.stdout is the terminal).
_terminal: list[TextIO] = []


def say(line: str) -> None:
    """Print ``line`` on the terminal, even while a step's output goes to the log."""
    try:
        print(line, file=_terminal[-1] if _terminal else sys.stdout, flush=True)
    except (IndexError, ValueError):  # the step ended meanwhile (heartbeat thread)
        print(line, flush=True)


def log_size(log_file: Path) -> int:
    """Where the next line of ``log_file`` will start (0 when it does not exist yet)."""
    try:
        return log_file.stat().st_size
    except OSError:
        return 0


@contextlib.contextmanager
def steps_output_to(log_file: Path) -> Iterator[None]:
    """Append this process's standard output and error, and those of the processes it
    starts, to ``log_file`` while open; :func:`say` still prints on the terminal."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    terminal = os.fdopen(os.dup(saved[0]), "w", encoding=sys.stdout.encoding, errors="replace")
    log = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _terminal.append(terminal)
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        _terminal.remove(terminal)
        terminal.close()
        for fd in (log, *saved):
            os.close(fd)


def last_lines(log_file: Path, since: int, count: int = 20) -> list[str]:
    """The last ``count`` lines written to ``log_file`` after byte ``since`` (a step's output),
    credentials masked."""
    from util_lib.redact import redact_text

    try:
        with log_file.open("rb") as file:
            file.seek(since)
            text = file.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    return [redact_text(line) for line in lines[-count:]]
