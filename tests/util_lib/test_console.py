"""The quiet terminal (util_lib/pipeline/console.py, util_lib/step/logs.py): a step's output goes
to the log file while the driver's progress lines still reach the terminal; a step whose
standard error is the log writes each line there once; the driver's INFO lines reach the
terminal only with main.verbose=true."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from util_lib.pipeline.console import last_lines, log_size, say, steps_output_to
from util_lib.step.logs import setup_logging

REPO = Path(__file__).resolve().parents[2]

# A step in miniature: its log lines (util_lib's logging) and a report on stdout (pytest's).
STEP = """
import logging, sys
from util_lib.step.logs import setup_logging
setup_logging("toy")
logging.getLogger("toy.run").info("counted 42896 rows")
print("test_data.py::test_genre_classes PASSED", flush=True)
sys.exit(int(sys.argv[1]))
"""


def _step(exit_code: int = 0, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", STEP, str(exit_code)], cwd=REPO, timeout=120, **kwargs
    )


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ml_pipeline.log"
    monkeypatch.setenv("ML_PIPELINE_LOG", str(path))
    return path


@pytest.mark.integration
def test_a_step_s_output_goes_to_the_log_and_progress_to_the_terminal(capfd, log_file) -> None:
    log_file.write_text("an earlier line\n")
    since = log_size(log_file)
    with steps_output_to(log_file):
        say("[1/1] toy …")
        assert _step().returncode == 0
        os.write(2, b"the driver's own output\n")  # e.g. MLflow's "=== Running command"
    say("[1/1] toy FINISHED")
    out, err = capfd.readouterr()
    assert out == "[1/1] toy …\n[1/1] toy FINISHED\n" and err == ""
    log = log_file.read_text()
    assert log.startswith("an earlier line\n")
    # Each log line once (through stderr, which is the log: not again by a file handler).
    assert log.count("INFO [toy] toy.run: counted 42896 rows") == 1, log
    assert "test_data.py::test_genre_classes PASSED" in log
    assert "the driver's own output" in log
    lines = last_lines(log_file, since)
    assert "an earlier line" not in lines and lines[-1] == "the driver's own output"


@pytest.mark.integration
def test_the_end_of_a_failed_step_s_output_is_kept(capfd, log_file) -> None:
    since = log_size(log_file)
    with steps_output_to(log_file):
        assert _step(exit_code=3).returncode == 3
    assert capfd.readouterr() == ("", "")
    lines = last_lines(log_file, since, count=1)
    assert lines == ["test_data.py::test_genre_classes PASSED"]


@pytest.mark.integration
def test_a_step_on_a_terminal_writes_to_both(log_file) -> None:
    """A step run alone (or main.verbose=true): its lines on stderr and in the log file."""
    done = _step(capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "INFO [toy] toy.run: counted 42896 rows" in done.stderr
    assert log_file.read_text().count("counted 42896 rows") == 1


@pytest.mark.parametrize("verbose", [False, True])
def test_the_driver_s_info_lines_reach_the_terminal_only_when_verbose(
    capsys, log_file, verbose: bool
) -> None:
    setup_logging("main", console_level=logging.INFO if verbose else logging.WARNING)
    try:
        logging.getLogger("main").info("get_data: FINISHED in 8.0 s")
        logging.getLogger("main").error("get_data failed: DownloadError")
        err = capsys.readouterr().err
    finally:
        setup_logging("main")  # the default handlers again, for the tests after this one
    assert ("get_data: FINISHED in 8.0 s" in err) is verbose
    assert "get_data failed: DownloadError" in err
    log = log_file.read_text()
    assert "FINISHED in 8.0 s" in log and "failed: DownloadError" in log
