"""Logging set-up shared by every step: one file, each line naming its step, no secrets."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from util_lib.environment import LOG_FILE_ENV
from util_lib.redact import redact_text

DEFAULT_LOG_FILE = "ml_pipeline.log"
_FORMAT = "%(asctime)s %(levelname)s [{step}] %(name)s: %(message)s"
_HANDLER_MARK = "_util_lib_handler"


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


def log_file_path() -> Path:
    """Return the pipeline's log file: ``$ML_PIPELINE_LOG``, else ``./ml_pipeline.log``."""
    return Path(os.environ.get(LOG_FILE_ENV) or DEFAULT_LOG_FILE).absolute()


def setup_logging(step: str, level: int = logging.INFO) -> Path:
    """Send the root logger's records to the pipeline log file and to stderr.

    Calling it again (another step in the same process, as tests do) replaces the
    handlers it added before, so no line is written twice.

    Parameters
    ----------
    step : str
        Name written on every line, e.g. ``get_data``.
    level : int, default=logging.INFO
        Minimum level of the records kept.

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
    for handler in (logging.FileHandler(path, encoding="utf-8"), _CurrentStderrHandler()):
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter (HTTP pools, alembic migrations) would drown the step's own lines.
    for noisy in ("urllib3", "alembic", "git", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
