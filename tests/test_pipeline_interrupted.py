"""A pipeline that dies mid-step (Ctrl-C, a kill of its process group) leaves no process behind:
no step, no tracking server, no W&B service, and no fork server or its socket folder.

Real processes: `mlflow run` of the pipeline (W&B offline, so W&B's service runs) in a session
of its own; once a step is at work, its process group gets the signal; then every process of
the machine whose command line or environment names the test's folder must be gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipeline_runs import DATASET, PROJECT, REPO, SMALL_FOREST, pipeline_env, sqlite_uri
from util_lib.pipeline.endings import ENDED_BY_TAG

pytestmark = pytest.mark.e2e


def _processes_naming(folder: Path) -> dict[int, str]:
    """Live processes (not zombies) whose command line or environment names ``folder``."""
    needle = str(folder).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in cmdline or needle in environ:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
    return found


def _wait_for(predicate, seconds: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, f"the pipeline ended (exit {process.returncode}) {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _statuses(workdir: Path) -> dict[str, list[tuple[str, str]]]:
    """run name -> [(status, why it ended)] of the runs of that name in the project's
    experiment, oldest first."""
    from mlflow import MlflowClient

    client = MlflowClient(sqlite_uri(workdir))
    experiment = client.get_experiment_by_name(PROJECT)
    found: dict[str, list[tuple[str, str]]] = {}
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    for run in runs:
        ended = (run.info.status, run.data.tags.get(ENDED_BY_TAG, ""))
        found.setdefault(run.info.run_name, []).append(ended)
    return found


# Ctrl-C reaches the whole process group (a terminal's); SIGTERM reaches `mlflow run` alone
# (`kill <pid>`, a service manager's stop); SIGKILL the whole group, which can mark nothing.
ENDINGS = [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGKILL, True)]


@pytest.mark.parametrize(("sig", "group"), ENDINGS, ids=["ctrl-c", "term", "kill"])
def test_a_pipeline_that_dies_mid_step_leaves_no_process(
    tmp_path: Path, sig: int, group: bool
) -> None:
    workdir = tmp_path / "interrupted"
    workdir.mkdir()
    env = pipeline_env(workdir, sqlite_uri(workdir), wandb_mode="offline")
    options = f"data.file_url={DATASET} hydra.run.dir={workdir / 'outputs'} {SMALL_FOREST}"
    command = ["mlflow", "run", str(REPO), "--env-manager", "local"]
    log = workdir / "ml_pipeline.log"
    with (workdir / "stdout.txt").open("w") as out:
        process = subprocess.Popen(
            [*command, "-P", f"hydra_options={options}"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives a command
        )
    try:
        # The third step at work: the pipeline's tracking server and W&B's service are up.
        _wait_for(
            lambda: log.exists() and "[check_data]" in log.read_text(),
            600,
            "check_data to start",
            process,
        )
        running = _processes_naming(workdir)
        assert any("wandb-core" in c for c in running.values()), running
        assert "tracking server http://127.0.0.1:" in log.read_text()
        if group:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)
        process.wait(timeout=120)
        deadline = time.monotonic() + 30
        left = _processes_naming(workdir)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = _processes_naming(workdir)
        assert not left, f"left behind after {signal.Signals(sig).name}: {left}"
        # Nor the fork server's socket folder (TMPDIR is the run's folder), however it ended.
        assert not list(workdir.glob("util_lib-fork-*")), "the fork server's folder was left"
        # The steps that ran were forked warm: the server's threads were all known to be safe.
        # (A step's output is in the log: the terminal shows only the progress lines.)
        said = (workdir / "stdout.txt").read_text() + log.read_text()
        assert "starting the step cold" not in said
        # The store says how it ended: no run left RUNNING by a pipeline that could end them.
        statuses = _statuses(workdir)
        assert statuses["get_data"][0][0] == statuses["preprocess"][0][0] == "FINISHED"
        why = f"interrupted by {signal.Signals(sig).name} during check_data"
        if sig == signal.SIGKILL:
            assert statuses["pipeline"][0][0] == statuses["check_data"][0][0] == "RUNNING"
            # The next pipeline on that store marks them (here one that runs get_data alone).
            rerun = subprocess.run(
                [*command, "-P", f"hydra_options={options} main.execute_steps=get_data"],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
            statuses = _statuses(workdir)
            assert statuses["pipeline"][1][0] == "FINISHED", statuses
            why = "ended without closing it"
        for name in ("pipeline", "check_data"):
            status, ended_by = statuses[name][0]
            assert status == "KILLED" and why in ended_by, (name, status, ended_by)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _processes_naming(workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
