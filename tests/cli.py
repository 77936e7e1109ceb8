"""Run a command line's ``main(argv)`` in this process, as its ``python -m`` would run it.

The commands' own code runs for real (the real store, the real files); what is saved is the
interpreter's start and MLflow's import for each call (2-5 s here). Each command keeps one
test that starts it as a process (its ``__main__``), so the entry point itself stays covered.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def run_main(main: Callable[[list[str]], Any], *args: str) -> subprocess.CompletedProcess:
    """Call ``main(list(args))``; return its exit code and what it printed, as
    ``subprocess.run(..., capture_output=True, text=True)`` would for the process.

    An exit (``sys.exit(code)``, argparse's usage error) ends the call as it ends a process:
    an integer is the code, a message is printed on stderr with code 1.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
                code = 1
            else:
                code = stop.code
    return subprocess.CompletedProcess(list(args), code or 0, out.getvalue(), err.getvalue())
