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
print("test_data.py::test_labels PASSED", flush=True)
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
    assert "test_data.py::test_labels PASSED" in log
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
    assert lines == ["test_data.py::test_labels PASSED"]


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


def _project(folder: Path, exit_code: int) -> Path:
    """An MLflow project whose step prints a line on stdout and one on stderr."""
    folder.mkdir()
    script = "import sys; print('step says hi'); sys.exit('step failed: no data')"
    if exit_code == 0:
        script = "print('step says hi')"
    (folder / "step.py").write_text(script + "\n")
    (folder / "MLproject").write_text(
        "name: toy\nentry_points:\n  main:\n    command: python step.py\n"
    )
    return folder


@pytest.mark.integration
@pytest.mark.parametrize("verbose", [False, True])
def test_the_runner_shows_a_step_s_output_only_when_verbose(
    capfd, tracking: Path, verbose: bool
) -> None:
    """run_step through a real `mlflow.run`: quiet, the step's output is in the log and the end
    of a failed step's is kept for the terminal; verbose, the terminal shows it as it comes."""
    import time

    from omegaconf import OmegaConf

    from util_lib.pipeline.launch import run_step
    from util_lib.pipeline.summary import StepResult

    log_file = tracking / "ml_pipeline.log"
    config = OmegaConf.create({"main": {"project_name": "toy"}})
    results = []
    for code in (0, 1):
        result = StepResult("get_data")  # a step of pipeline.yaml: its metrics are looked up
        uri = str(_project(tracking / f"toy{code}", code))
        run_step(result, {}, (uri, None), config, "local", time.monotonic(), None, None,
                  None if verbose else log_file)  # fmt: skip
        results.append(result)
    out, err = capfd.readouterr()
    assert [r.status for r in results] == ["FINISHED", "FAILED"]
    shown = out + err
    assert (shown.count("step says hi") == 2) is verbose, shown
    assert ("step failed: no data" in shown) is verbose, shown
    if verbose:
        assert results[1].tail == []  # the terminal showed it
    else:
        # (MLflow's "=== Running command" lines go to the log too, at the file descriptor
        # level; pytest's capture of sys.stderr takes them first here.)
        assert "step says hi" not in shown
        assert log_file.read_text().count("step says hi") == 2
        assert results[1].tail[-1] == "step failed: no data", results[1].tail
        assert "step says hi" in results[1].tail
