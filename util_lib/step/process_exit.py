"""Ending a step's process without the interpreter's teardown.

A step process holds MLflow's SQLAlchemy store, W&B and scikit-learn: once its work is done,
Python's teardown (freeing every module's objects one by one) still takes 0.5-0.8 s on these
machines, paid once per step (``python benchmarks/step_startup.py`` measures it). The
operating system frees all of it at once anyway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import NoReturn

from util_lib.step.private_apis import run_atexit_handlers, shutdown_threads


def exit_quickly(code: int = 0) -> NoReturn:
    """Run what must run at exit, then end the process at once with ``code``.

    Executors are shut down and non-daemon threads joined, as at the interpreter's exit, and
    the :mod:`atexit` handlers run (W&B's service teardown, MLflow's flush of asynchronous
    logging), then log handlers and the standard streams are flushed; only the interpreter's
    own teardown is skipped. Call it as the last statement of a step's ``__main__`` block,
    after the tracked run has ended; a failing step exits the ordinary way.
    """
    if threading.current_thread() is threading.main_thread():
        shutdown_threads()  # threading's exit callbacks, then the wait for its threads
    else:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and thread.is_alive():
                thread.join()
    run_atexit_handlers()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A closed stream or a broken pipe has nothing left to save.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
