"""Fixtures shared by the tests: an isolated tracking store per test, processes started
together on it, and the dataset; and the tiers every test belongs to.

Tiers (pyproject.toml's markers), chosen by name: ``pytest -m unit``, ``-m "unit or
integration"``, ``-m e2e``:

- ``unit``: pure functions; no store, no subprocess, no socket. A test with no tier of its own
  is one, and a guard fails it if it opens SQLite, starts a process or opens a socket (the
  message says to mark it ``integration``);
- ``integration``: real MLflow stores, W&B offline, servers and processes started by the test,
  in process where it can; a test that uses a store fixture (:data:`STORE_FIXTURES`) is one;
- ``e2e``: the pipeline through ``mlflow run``, servers, browsers; marked in its module.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import pipeline_runs

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / "dataset" / "genres_mod.parquet"

TIERS = ("unit", "integration", "e2e")
# Fixtures that give a test a real store: the test is an integration test.
STORE_FIXTURES = frozenset({"tracking", "migrated_store", "run_together"})
# What a unit test may not do (Python's audit events, PEP 578).
_NOT_IN_UNIT_TESTS = {
    "sqlite3.connect": "open a SQLite database (an MLflow store)",
    "subprocess.Popen": "start a process",
    "os.fork": "fork",
    "os.posix_spawn": "start a process",
    "socket.connect": "open a network connection",
    "socket.bind": "listen on a socket",
}
_tier_now: list[str] = [""]  # the tier of the test whose body runs now


def _unit_guard(event: str, _args: tuple) -> None:
    if _tier_now[0] == "unit" and event in _NOT_IN_UNIT_TESTS:
        _tier_now[0] = ""  # once: pytest's own reporting must not trip it
        raise RuntimeError(
            f"a unit test must not {_NOT_IN_UNIT_TESTS[event]} ({event}): "
            "mark it pytest.mark.integration"
        )


sys.addaudithook(_unit_guard)
# platform.platform() runs `uname -p` once per process (then cached), and importing MLflow asks
# for it (its telemetry schema): asked here, so that the unit test that happens to import
# MLflow first in a worker is not failed for the standard library's lookup.
platform.platform()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads these options
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Run the tests in parallel unless told otherwise: ``-n auto --dist loadgroup``.

    pytest-xdist starts one worker per core; ``pytest -n 0`` runs serially, ``-n 4`` with four.
    loadgroup keeps each xdist group on one worker (:func:`_file_group`). These are not in
    pyproject.toml's addopts: check_data's suite runs pytest under that section too, in a
    process that loads no plugin, where ``-n`` would be an unknown option.
    """
    if hasattr(config, "workerinput"):
        # A worker parses only the command line: it learns the mode chosen here from
        # pytest_configure_node, else it would not name the groups and loadgroup would
        # schedule each test alone (every module fixture made on both workers).
        config.option.loadgroup = config.workerinput.get("loadgroup", config.option.loadgroup)
        return
    # Not without pytest-xdist (-p no:xdist).
    if not config.pluginmanager.hasplugin("xdist"):
        return
    if config.option.numprocesses is None:
        config.option.numprocesses = "auto"
    if config.option.numprocesses and config.option.dist == "no":
        config.option.dist = "loadgroup"
    # Hand out the work in the order _longest_first gives it, not by size alone.
    config.option.loadscopereorder = False


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook; absent with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """Hand each worker the distribution mode :func:`pytest_cmdline_main` chose."""
    node.workerinput["loadgroup"] = node.config.option.dist == "loadgroup"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (its own hook)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its tier: its own mark, else integration when it uses a store
    fixture, else unit. Two tiers on one test is an error. Give a test that shares a
    module-scoped fixture its file's xdist group (:func:`_file_group`)."""
    for item in items:
        marked = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(marked) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {marked}: one tier only")
        if not marked:
            tier = "integration" if STORE_FIXTURES & set(item.fixturenames) else "unit"
            item.add_marker(tier)
        group = _file_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    items[:] = _longest_first(items)


def _longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The tests in the order the workers should take them: the end-to-end tests first, then
    the integration tests, then the unit tests; within a tier, the larger xdist groups first.

    pytest-xdist hands each free worker the next group (or lone test) in this order. A long
    test taken last keeps one worker busy while the other has nothing left (the longest-first
    rule of scheduling): in file order the sweeps' group (9 minutes of a worker) and
    docs/your_own_model.md's test started late. Many short tests at the end fill the gaps. The
    tests of one file keep their order, and a group's tests stay together.
    """
    rank = {tier: n for n, tier in enumerate(TIERS[::-1])}  # e2e 0, integration 1, unit 2
    units: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        marker = item.get_closest_marker("xdist_group")
        group = (marker.args or [marker.kwargs.get("name")])[0] if marker else None
        unit = f"@{group}" if group else item.nodeid
        units.setdefault(unit, []).append(index)
    order = sorted(
        units.values(),
        key=lambda members: (
            min(rank[_tier(items[i])] for i in members),
            -len(members),
            members[0],
        ),
    )
    return [items[i] for members in order for i in members]


def _tier(item: pytest.Item) -> str:
    return next(tier for tier in TIERS if item.get_closest_marker(tier))


def _file_group(item: pytest.Item) -> str | None:
    """The xdist group of a test that uses a module-scoped fixture: its file's path.

    pytest-xdist (``--dist loadgroup``, :func:`pytest_cmdline_main`) runs the tests of one
    group on one worker, in file order, and sends every other test wherever a worker is free.
    A module-scoped fixture (a pipeline run, a server) is made once per worker that needs it:
    the tests that share one stay together, so it is made once. A test already in a group
    stays in it: files that share a session-scoped fixture name their group themselves (e.g.
    ``local_run``).
    """
    if item.get_closest_marker("xdist_group"):
        return None
    # pytest's record of the fixtures the test uses (no public API gives their scopes).
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(d[-1].scope in ("module", "class", "package") for d in definitions.values() if d):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """While a unit test's body runs, the guard watches it."""
    _tier_now[0] = "unit" if item.get_closest_marker("unit") else ""
    try:
        return (yield)
    finally:
        _tier_now[0] = ""


@pytest.fixture(scope="session")
def migrated_store() -> Path:
    """An MLflow SQLite store migrated once per session (tests/pipeline_runs.py)."""
    return pipeline_runs.migrated_store()


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_store: Path) -> Path:
    """A fresh MLflow tracking store (SQLite + local artifacts) in ``tmp_path``, W&B disabled.

    The store is a copy of one migrated once per session (:func:`migrated_store`). The working
    directory moves there too, so anything a run writes stays in the test's folder.
    """
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = pipeline_runs.copy_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("ML_PIPELINE_LOG", str(tmp_path / "ml_pipeline.log"))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("UTIL_LIB_ARTIFACT_STORE", raising=False)
    yield tmp_path
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # back to the environment's


@pytest.fixture
def run_together(tracking: Path) -> Callable[..., list[str]]:
    """Run a Python script in several processes released at one moment; return their results.

    The returned function takes the script and one argument list per process, and returns the
    last line each process printed, after asserting that every one exited 0. The script gets
    two paths before its own arguments: ``sys.argv[1]``, the file whose creation releases the
    processes, and ``sys.argv[2]``, its own ready file. At the point where the processes should
    meet, it creates its ready file and then waits for the release file to exist::

        Path(sys.argv[2]).touch()
        while not Path(sys.argv[1]).exists():
            time.sleep(0.01)

    The release comes once every ready file exists. A process that ends before it is ready, or
    is not ready within ``ready_timeout`` seconds, fails the test with its number, its ready
    file and its stderr. The project is on the processes' PYTHONPATH, the tracking store is the
    test's, and ``env`` adds variables.
    """

    def run(
        script: str,
        arguments: list[list[str]],
        env: dict[str, str] | None = None,
        *,
        ready_timeout: float = 120,
        timeout: float = 120,
    ) -> list[str]:
        go = tracking / "go"
        together = [_Together(n, go) for n in range(len(arguments))]
        try:
            for member, args in zip(together, arguments, strict=True):
                member.start(
                    [sys.executable, "-c", script, str(go), str(member.ready), *args],
                    {**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                )
            _wait_until_ready(together, ready_timeout)
            go.touch()
            for member in together:
                member.process.wait(timeout=timeout)
        finally:
            for member in together:  # only on failure: the test has ended them otherwise
                member.stop()
        for member in together:
            assert member.process.returncode == 0, member.stderr()
        return [member.stdout().strip().splitlines()[-1] for member in together]

    return run


class _Together:
    """Process ``number`` of ``run_together``: its ready file ``<go>.ready.<number>`` and its
    output files beside it."""

    def __init__(self, number: int, go: Path) -> None:
        self.number = number
        self.ready = go.with_name(f"{go.name}.ready.{number}")
        # Files, not pipes: a process that prints much before the meeting point cannot block,
        # and a late one's stderr can be read while it runs.
        self._out = go.with_name(f"{go.name}.stdout.{number}")
        self._err = go.with_name(f"{go.name}.stderr.{number}")
        self.process: subprocess.Popen | None = None

    def start(self, command: list[str], env: dict[str, str]) -> None:
        with self._out.open("w") as out, self._err.open("w") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stdout(self) -> str:
        return self._out.read_text()

    def stderr(self) -> str:
        return self._err.read_text()


def _wait_until_ready(together: list[_Together], timeout: float) -> None:
    """Wait until every process has written its ready file; fail naming one that has not."""
    deadline = time.monotonic() + timeout
    while missing := [m for m in together if not m.ready.exists()]:
        for member in missing:
            if member.process.poll() is not None:
                pytest.fail(
                    f"process {member.number} ended (exit {member.process.returncode}) before "
                    f"writing its ready file {member.ready.name}; its stderr:\n"
                    f"{member.stderr()[-4000:]}"
                )
        if time.monotonic() > deadline:
            pytest.fail(
                "\n".join(
                    f"process {m.number} did not write its ready file {m.ready.name} within "
                    f"{timeout:g} s; its stderr:\n{m.stderr()[-2000:]}"
                    for m in missing
                )
            )
        time.sleep(0.02)


@pytest.fixture(scope="session")
def dataset_path() -> Path:
    """The dataset the project ships (``dataset/genres_mod.parquet``)."""
    return DATASET


@pytest.fixture(scope="session")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> pipeline_runs.PipelineRun:
    """The whole pipeline as a user's first run of the default configuration, with a small
    forest (`mlflow run`, the current environment, W&B off, a store of its own).

    Looked at, never changed, by the tests of MLflow's UI (test_mlflow_ui.py), the reference of
    the reproducibility and uv tests (deploy/); those files share the xdist group
    ``local_run``, so the run is made once.
    """
    workdir = tmp_path_factory.mktemp("local_run")
    return pipeline_runs.mlflow_run(workdir, pipeline_runs.SMALL_FOREST).check()
