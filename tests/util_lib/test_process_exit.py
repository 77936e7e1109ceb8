"""util_lib.step.process_exit: a quick exit still runs what must run at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Real processes and sockets: each test starts its own.
pytestmark = pytest.mark.integration

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("joined")
threading.Thread(target=late).start()
sys.stdout.write("unflushed output")
from util_lib.step.process_exit import exit_quickly
exit_quickly(3)
print("not reached")
"""


def test_exit_quickly_keeps_the_code_atexit_handlers_threads_and_output(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed output"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"


# A process pool still open at exit, as joblib's (loky) is after a Hydra joblib sweep: its
# manager thread stops in threading's exit callbacks, which must run before the threads are
# joined, else the process never ends.
OPEN_POOL = """
import sys
from joblib import Parallel, delayed
print(sum(Parallel(n_jobs=2)(delayed(abs)(i) for i in range(-3, 0))))
from concurrent.futures import ProcessPoolExecutor
pool = ProcessPoolExecutor(1)
print(pool.submit(abs, -4).result())
from util_lib.step.process_exit import exit_quickly

exit_quickly(0)
"""


def test_exit_quickly_with_open_process_pools_ends(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_POOL],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6", "4"]
