"""Logging set-up shared by every step: one file, each line naming its step, no secrets.

Every line is redacted (:func:`util_lib.redact.redact_text`), and so is the traceback of an
exception nobody caught (:func:`setup_logging` installs redacting ``sys.excepthook`` and
``threading.excepthook``): the last error a step prints, which W&B's console capture records
too, names URLs without their credentials, whatever library raised it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from util_lib.names import LOG_FILE_ENV
from util_lib.redact import redact_text

DEFAULT_LOG_FILE = "ml_pipeline.log"
_FORMAT = "%(asctime)s %(levelname)s [{step}] %(name)s: %(message)s"
_HANDLER_MARK = "_util_lib_handler"
# ``extra=`` of a record meant for the log file alone (the terminal shows it otherwise).
FILE_ONLY = {"util_lib_file_only": True}


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "util_lib_file_only", False)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last resort does).

    A handler bound to the ``sys.stderr`` of set-up time breaks once that stream is closed,
    e.g. pytest's capture stand-in in the data-check suite.
    """

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _RedactingFormatter(logging.Formatter):
    """Masks the credentials of every URL in a line (tracking URI, data URL, git URL), whoever
    logged it: the step, util_lib, or a library that logs a URL it was given."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def redacting_excepthook(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
) -> None:
    """``sys.excepthook`` that prints the traceback (with its chain) redacted to stderr."""
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write(redact_text(text))
    sys.stderr.flush()


def _redacting_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook`` that prints as the default one does, redacted."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else threading.get_ident()
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(redact_text(f"Exception in thread {name}:\n{text}"))
    sys.stderr.flush()


def install_redacting_excepthooks() -> None:
    """Make an uncaught exception's traceback (main thread or any other) print redacted.

    ``sys.excepthook`` is replaced whatever it is: W&B's (``wandb.init``), which prints the
    traceback unredacted before calling the previous hook, is the one to displace, so call
    this again after ``wandb.init``. ``threading.excepthook`` is replaced only when it is
    Python's own (pytest puts its own there during a test).
    """
    sys.excepthook = redacting_excepthook
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _redacting_thread_excepthook


def log_file_path() -> Path:
    """Return the pipeline's log file: ``$ML_PIPELINE_LOG``, else ``./ml_pipeline.log``."""
    return Path(os.environ.get(LOG_FILE_ENV) or DEFAULT_LOG_FILE).absolute()


def stderr_is(path: Path) -> bool:
    """Whether this process's standard error is the file ``path`` (the pipeline sends a
    quiet step's output to its log file: :mod:`util_lib.pipeline.console`)."""
    try:
        return os.path.samestat(os.fstat(sys.stderr.fileno()), os.stat(path))
    except (OSError, AttributeError, ValueError):  # no such file; stderr not a real file
        return False


def setup_logging(step: str, level: int = logging.INFO, console_level: int | None = None) -> Path:
    """Send the root logger's records to the pipeline log file and to stderr.

    Calling it again (another step in the same process, as tests do) replaces the
    handlers it added before, so no line is written twice. When stderr is the log file
    already (a step of a quiet pipeline), the records go there once, through stderr (which
    W&B's console capture records too).

    Parameters
    ----------
    step : str
        Name written on every line, e.g. ``get_data``.
    level : int, default=logging.INFO
        Minimum level of the records kept.
    console_level : int, optional
        Minimum level of the records printed on stderr (default ``level``): the quiet
        pipeline's driver prints only its warnings and errors there. Records logged with
        ``extra=FILE_ONLY`` never are.

    Returns
    -------
    pathlib.Path
        The log file appended to.
    """
    path = log_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = _RedactingFormatter(_FORMAT.format(step=step))
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    console = _CurrentStderrHandler()
    handlers: list[logging.Handler] = [console]
    if not stderr_is(path):
        console.setLevel(console_level or level)
        console.addFilter(_not_file_only)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    install_redacting_excepthooks()
    # Third-party chatter (HTTP pools, alembic migrations) would drown the step's own lines.
    for noisy in ("urllib3", "alembic", "git", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def describe(error: BaseException) -> str:
    """What went wrong, as a person reads it: ``Type: message`` (the message alone for
    ``sys.exit("message")``; "interrupted" for Ctrl-C)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, SystemExit):
        return str(error.code) if isinstance(error.code, str) else f"exit status {error.code}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line, secrets masked, at most ``limit`` characters."""
    from util_lib.redact import redact_text

    line = " ".join(redact_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
