"""The fork server and its launcher, with real processes: a step handed to the server runs as
it would in its own process (arguments, environment, folder, streams, exit status, signals),
never outlives its launcher, and runs cold, in the launcher, when the server cannot stand
for it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from util_lib import forkserver
from util_lib.environment import FORKSERVER_ENV

REPO = Path(__file__).resolve().parents[2]

# Prints what a step would see of itself, then exits with argv[1].
SCRIPT = """
import json, os, sys
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "pid": os.getpid(),
    "ppid": os.getppid(), "pgid": os.getpgrp(), "name": __name__,
    "warm": "mlflow" in sys.modules, "value": os.environ.get("STEP_VALUE"),
}))
print("to stderr", file=sys.stderr)
code = sys.argv[1]
sys.exit(int(code) if code.isdigit() else code)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[forkserver.ForkServer]:
    os.environ.pop(FORKSERVER_ENV, None)
    started = forkserver.start()
    assert started is not None
    os.environ.pop(FORKSERVER_ENV)  # each launcher is given it explicitly
    try:
        yield started
    finally:
        started.stop()


def _env(server: forkserver.ForkServer | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop(FORKSERVER_ENV, None)
    if server is not None:
        env[FORKSERVER_ENV] = server.address
    return env


def _launch(folder: Path, *args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "util_lib.forkserver", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _step(tmp_path: Path, source: str = SCRIPT) -> Path:
    folder = tmp_path / "step"
    folder.mkdir(exist_ok=True)
    (folder / "run.py").write_text(textwrap.dedent(source))
    return folder


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_step_runs_in_a_warm_child_as_in_its_own_process(server, tmp_path: Path) -> None:
    import json

    folder = _step(tmp_path)
    launcher = _launch(folder, "run.py", "3", "--flag", env=_env(server, STEP_VALUE="x y"))
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 3, err
    seen = json.loads(out)
    assert seen["argv"] == ["run.py", "3", "--flag"]
    assert seen["cwd"] == str(folder)
    assert seen["path0"] == str(folder)  # as `python run.py` would have it
    assert seen["name"] == "__main__"
    assert seen["value"] == "x y"  # the launcher's environment, not the server's
    # A child of the server, already holding the warm libraries, in the launcher's group.
    assert seen["ppid"] == server.process.pid
    assert seen["pid"] != launcher.pid
    assert seen["pgid"] == os.getpgrp()  # the launcher's, which is this test's
    assert seen["warm"]
    assert err.strip() == "to stderr"


def test_a_module_runs_as_python_dash_m_would(server, tmp_path: Path) -> None:
    import json

    folder = _step(tmp_path)
    (folder / "as_module.py").write_text(textwrap.dedent(SCRIPT))
    launcher = _launch(folder, "-m", "as_module", "0", env=_env(server))
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    seen = json.loads(out)
    assert seen["argv"][1:] == ["0"] and seen["argv"][0].endswith("as_module.py")
    assert seen["path0"] == str(folder)
    assert seen["ppid"] == server.process.pid


def test_errors_end_the_step_as_the_interpreter_would(server, tmp_path: Path) -> None:
    folder = _step(tmp_path)
    message = _launch(folder, "run.py", "no such thing", env=_env(server))
    _, err = message.communicate(timeout=120)
    assert message.returncode == 1
    assert "no such thing" in err
    missing = _launch(folder, "no_such_step.py", env=_env(server))
    _, err = missing.communicate(timeout=120)
    assert missing.returncode == 1
    assert f"can't open file '{folder / 'no_such_step.py'}'" in err and "Traceback" not in err
    (folder / "boom.py").write_text("raise ValueError('the column danceability is missing')\n")
    boom = _launch(folder, "boom.py", env=_env(server))
    _, err = boom.communicate(timeout=120)
    assert boom.returncode == 1
    assert "Traceback" in err and "ValueError: the column danceability is missing" in err


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["cancel", "ctrl-c", "term-group"],
)
def test_a_signal_reaches_the_step_once(server, tmp_path: Path, sig: int, to_group: bool) -> None:
    """`mlflow run` cancels a step by signalling its command alone; a terminal signals the
    whole process group. Either way the step gets the signal, once."""
    folder = _step(
        tmp_path,
        """
        import os, pathlib, signal, sys, time
        def stop(signum, frame):
            with open("got", "a") as out:
                out.write(signal.Signals(signum).name + "\\n")
            time.sleep(0.5)  # a second delivery would be recorded meanwhile
            sys.exit(7)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        pathlib.Path("ready").write_text(str(os.getpid()))
        time.sleep(60)
        """,
    )
    # A process group of its own, as a shell gives a command.
    launcher = _launch(folder, "run.py", env=_env(server), process_group=0)
    deadline = time.monotonic() + 60
    while not (folder / "ready").exists():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.05)
    if to_group:
        os.killpg(launcher.pid, sig)
    else:
        launcher.send_signal(sig)
    launcher.communicate(timeout=60)
    assert launcher.returncode == 7
    assert (folder / "got").read_text().split() == [signal.Signals(sig).name]


def test_a_step_never_outlives_its_launcher(server, tmp_path: Path) -> None:
    folder = _step(
        tmp_path,
        """
        import os, pathlib, subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pathlib.Path("ready").write_text(f"{os.getpid()} {helper.pid}")
        time.sleep(60)
        """,
    )
    launcher = _launch(folder, "run.py", env=_env(server))
    deadline = time.monotonic() + 60
    while not (folder / "ready").exists() or not (folder / "ready").read_text():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.05)
    step, _helper = map(int, (folder / "ready").read_text().split())
    launcher.kill()  # the launcher alone, which no handler can catch
    launcher.wait()
    deadline = time.monotonic() + 30
    while _alive(step) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(step), "the step outlived its killed launcher"


def test_a_step_killed_by_a_signal_kills_its_launcher_the_same_way(server, tmp_path: Path) -> None:
    folder = _step(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    launcher = _launch(folder, "run.py", env=_env(server))
    launcher.communicate(timeout=60)
    assert launcher.returncode == -signal.SIGKILL


def test_a_launcher_the_server_cannot_stand_for_runs_cold(server, tmp_path: Path) -> None:
    import json

    folder = _step(tmp_path)
    # matplotlib reads MPLBACKEND while it is imported: the server's modules would not do.
    launcher = _launch(folder, "run.py", "0", env=_env(server, MPLBACKEND="svg"))
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert "$MPLBACKEND differs from the fork server's; starting the step cold" in err
    seen = json.loads(out)
    assert seen["pid"] == launcher.pid  # in the launcher's own process
    assert not seen["warm"]


def test_without_a_server_the_launcher_runs_the_step_itself(tmp_path: Path) -> None:
    import json

    folder = _step(tmp_path)
    for env in (_env(None), _env(None, **{FORKSERVER_ENV: "false"})):
        launcher = _launch(folder, "run.py", "4", env=env)
        out, err = launcher.communicate(timeout=120)
        assert launcher.returncode == 4, err
        seen = json.loads(out)
        assert seen["pid"] == launcher.pid and seen["path0"] == str(folder)
        assert "cold" not in err  # nothing to say: no server was asked


def test_the_server_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    ready = tmp_path / "server"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, pathlib, sys, time\n"
            "from util_lib import forkserver\n"
            "server = forkserver.start()\n"
            f"pathlib.Path({str(ready)!r}).write_text(str(server.process.pid))\n"
            "time.sleep(120)\n",
        ],
        env=_env(None),
    )
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(ready.read_text())
    assert _alive(pid)
    driver.kill()  # no chance to stop it
    driver.wait()
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the fork server outlived the driver"


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_a_step_ends_with_the_process_that_started_it(tmp_path: Path, warm: bool) -> None:
    """Ctrl-C reaches `mlflow run` and the pipeline's driver at once; the first kills the
    second before it can cancel its step: the step, still at work (an interrupted step may
    retry calls to the driver's tracking server for minutes), must end with it."""
    folder = _step(
        tmp_path,
        """
        import os, pathlib, signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # busy with what Ctrl-C started
        pathlib.Path("ready").write_text(str(os.getpid()))
        time.sleep(120)
        """,
    )
    started = tmp_path / "launcher"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, pathlib, subprocess, sys, time\n"
            "from util_lib import forkserver\n"
            f"server = forkserver.start() if {warm} else None\n"
            "launcher = subprocess.Popen(\n"
            "    [sys.executable, '-m', 'util_lib.forkserver', 'run.py'],\n"
            f"    cwd={str(folder)!r},\n"
            ")\n"
            f"pathlib.Path({str(started)!r}).write_text(str(launcher.pid))\n"
            "time.sleep(120)\n",
        ],
        env=_env(None),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / "ready").exists() or not (folder / "ready").read_text():
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        step, launcher = int((folder / "ready").read_text()), int(started.read_text())
        assert (step != launcher) is warm
        driver.kill()  # no chance to cancel its step
        driver.wait()
        deadline = time.monotonic() + 30
        while (_alive(step) or _alive(launcher)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(step), "the step outlived the process that started it"
        assert not _alive(launcher), "the launcher outlived the process that started it"
    finally:
        if driver.poll() is None:
            driver.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)


def test_stop_ends_the_server_and_removes_its_socket() -> None:
    os.environ.pop(FORKSERVER_ENV, None)
    started = forkserver.start()
    assert started is not None and os.environ[FORKSERVER_ENV] == started.address
    started.stop()
    assert started.process.returncode == 0
    assert not Path(started.address).exists()
    assert FORKSERVER_ENV not in os.environ


def test_every_module_the_server_warms_exists() -> None:
    """A misspelt module in pipeline.yaml's ``imports`` would be skipped without a word."""
    import importlib.util

    from util_lib.graph import load_graph

    modules = [
        *forkserver.COMMON_MODULES,
        forkserver.STORE_MODULE,
        *(m for step in load_graph() for m in step.imports),
    ]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not missing, f"not importable here: {missing}"


def test_a_step_that_comes_early_waits_for_its_modules(tmp_path: Path) -> None:
    """A launcher that comes while the server still imports waits for what its step needs
    (imported next), instead of importing it again beside the server."""
    import json

    folder = _step(tmp_path)
    (folder / "run.py").write_text(
        "import json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in ('mlflow', 'xml.dom.minidom')}))\n"
    )
    os.environ.pop(FORKSERVER_ENV, None)
    started = forkserver.start()
    assert started is not None
    try:
        assert forkserver.warm(["xml.dom.minidom"], step=folder.name)
        launcher = _launch(folder, "run.py", env=_env(started))
        out, err = launcher.communicate(timeout=120)
    finally:
        started.stop()
    assert launcher.returncode == 0, err
    assert json.loads(out) == {"mlflow": True, "xml.dom.minidom": True}


def test_stopping_them_all_starts_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver stops its server when the steps run in another environment (uv): the
    steps then start cold without a word, and a sweep's next job starts none."""
    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    started = forkserver.start()
    assert started is not None
    forkserver.stop()
    assert started.process.returncode == 0
    assert os.environ[FORKSERVER_ENV] == "false"
    assert forkserver.start() is None
    assert not forkserver.warm(["json"])
