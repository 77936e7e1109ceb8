"""The fork server and its launcher, with real processes: a step handed to the server runs as
it would in its own process (arguments, environment, folder, streams, exit status, signals),
never outlives its launcher, and runs cold, in the launcher, when the server cannot stand
for it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from util_lib.names import FORKSERVER_ENV
from util_lib.pipeline import forkserver
from util_lib.step import launcher

REPO = Path(__file__).resolve().parents[2]

# Real processes and sockets: each test starts its own.
pytestmark = pytest.mark.integration

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
        [sys.executable, "-m", "util_lib.step.launcher", *args],
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


def test_a_step_gets_its_own_temporary_folder_not_the_servers(server, tmp_path: Path) -> None:
    """The server imported wandb, which read the server's TMPDIR once; a step started from it
    writes its temporary files where its own TMPDIR says (a pipeline keeps them in its folder)."""
    folder = _step(tmp_path, "import tempfile\nprint(tempfile.gettempdir())\n")
    own = tmp_path / "own temporary folder"
    own.mkdir()
    launcher = _launch(folder, "run.py", env=_env(server, TMPDIR=str(own)))
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert out.strip() == str(own)


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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_the_server_ends_with_the_process_that_started_it(tmp_path: Path, sig: int) -> None:
    """A driver that dies of a signal (mlflow's cancel, a kill) runs no atexit handler: the
    server ends by itself, and leaves no socket or folder in the temporary folder."""
    ready = tmp_path / "server"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, pathlib, sys, time\n"
            "from util_lib.pipeline import forkserver\n"
            "server = forkserver.start()\n"
            "said = f'{server.process.pid} {server.folder}'\n"
            f"pathlib.Path({str(ready)!r}).write_text(said)\n"
            "time.sleep(120)\n",
        ],
        env=_env(None),
    )
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid, folder = ready.read_text().split(" ", 1)
    assert _alive(int(pid)) and Path(folder, "socket").exists()
    driver.send_signal(sig)  # no chance to stop it
    driver.wait()
    deadline = time.monotonic() + 30
    while (_alive(int(pid)) or Path(folder).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid)), "the fork server outlived the driver"
    assert not Path(folder).exists(), f"the fork server left {folder} behind"


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
            "from util_lib.pipeline import forkserver\n"
            f"server = forkserver.start() if {warm} else None\n"
            "launcher = subprocess.Popen(\n"
            "    [sys.executable, '-m', 'util_lib.step.launcher', 'run.py'],\n"
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


def test_a_deep_temporary_folder_still_gives_a_warm_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-xdist's and CI runners' temporary folders leave a Unix socket's path too long
    # (107 bytes on Linux): the server's socket goes to /tmp then, and steps still start warm.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(forkserver.tempfile, "tempdir", None)  # read TMPDIR again
    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    started = forkserver.start()
    assert started is not None
    try:
        assert len(started.address) <= 100, started.address
        assert Path(started.address).is_socket()
        launcher = _launch(_step(tmp_path), "run.py", "0", env=_env(started))
        out, err = launcher.communicate(timeout=120)
        assert launcher.returncode == 0, err
        assert '"warm": true' in out and "cold" not in err
    finally:
        started.stop()
    assert not Path(started.folder).exists()


def test_every_module_the_server_warms_exists() -> None:
    """A misspelt module in pipeline.yaml's ``imports`` would be skipped without a word."""
    import importlib.util

    from util_lib.pipeline.graph import load_graph

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


# --- where it runs -------------------------------------------------------------------------


def test_off_linux_a_pipeline_says_once_that_its_steps_start_cold(tmp_path: Path) -> None:
    """macOS: no server unless asked for; one line for the whole pipeline, none per step."""
    import json

    folder = _step(tmp_path)
    driver = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "sys.platform = 'darwin'\n"
            "from util_lib.pipeline import forkserver\n"
            "assert forkserver.start(wait=False) is None and forkserver.start() is None\n"
            "for code in ('0', '5'):\n"
            "    launcher = [sys.executable, '-m', 'util_lib.step.launcher', 'run.py', code]\n"
            f"    subprocess.run(launcher, cwd={str(folder)!r})\n",
        ],
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert driver.returncode == 0, driver.stderr
    said = [line for line in driver.stderr.splitlines() if "util_lib.forkserver" in line]
    assert said == [
        "util_lib.forkserver: the steps start cold: the fork server runs by default on Linux "
        f"only, fork being unsafe on darwin ({FORKSERVER_ENV}=true turns it on)"
    ]
    steps = [json.loads(line) for line in driver.stdout.splitlines()]
    assert [step["argv"][1] for step in steps] == ["0", "5"]
    assert not any(step["warm"] for step in steps)


def test_on_macos_true_turns_the_server_on(tmp_path: Path, monkeypatch) -> None:
    import json

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv(FORKSERVER_ENV, "true")
    started = forkserver.start(["json"])
    assert started is not None
    try:
        assert os.environ[FORKSERVER_ENV] == started.address
        launcher = _launch(_step(tmp_path), "run.py", "0", env=_env(started))
        out, err = launcher.communicate(timeout=120)
    finally:
        started.stop()
    assert launcher.returncode == 0, err
    assert json.loads(out)["ppid"] == started.process.pid


def _death_signal() -> int:
    import ctypes

    value = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
    return value.value


def test_without_fork_or_unix_sockets_nothing_reaches_them(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """Windows: no os.fork, no AF_UNIX, no SIGHUP/SIGQUIT/SIGALRM, no prctl. Neither the
    driver's start() (main.py's first statement), asked for the server or not, nor a step's
    launcher, given a server's address or not, touches them."""
    monkeypatch.setattr(sys, "platform", "win32")
    for module, name in ((os, "fork"), (socket, "AF_UNIX")) + tuple(
        (signal, name) for name in ("SIGHUP", "SIGQUIT", "SIGALRM")
    ):
        monkeypatch.delattr(module, name)
    for asked in (True, False):
        if asked:
            monkeypatch.setenv(FORKSERVER_ENV, "true")
        else:
            monkeypatch.delenv(FORKSERVER_ENV)
        assert forkserver.start(wait=False) is None and forkserver.start() is None
        assert os.environ[FORKSERVER_ENV] == "false"
        assert capsys.readouterr().err.splitlines() == [
            "util_lib.forkserver: the steps start cold: win32 has no os.fork and no "
            "socket.AF_UNIX, which the fork server needs"
        ]
    folder = tmp_path / "step"
    folder.mkdir()
    (folder / "run.py").write_text(
        "import pathlib, sys\npathlib.Path('ran').write_text(' '.join(sys.argv))\n"
    )
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = _death_signal()
    try:
        launcher.main(["run.py", "a", "b"])
        assert (folder / "ran").read_text() == "run.py a b"
        assert capsys.readouterr().err == ""
        monkeypatch.setenv(FORKSERVER_ENV, str(tmp_path / "socket"))  # given one, somehow
        launcher.main(["run.py", "c"])
        assert (folder / "ran").read_text() == "run.py c"
        assert capsys.readouterr().err.splitlines() == [
            "util_lib.forkserver: win32 has no os.fork and no socket.AF_UNIX; "
            "starting the step cold"
        ]
        assert _death_signal() == before, "the launcher called prctl"
    finally:
        import ctypes

        ctypes.CDLL(None).prctl(1, before)  # PR_SET_PDEATHSIG


# --- what the server holds, and who may hold it up -----------------------------------------

# Modules that start a thread when imported: a Python thread, a native one that names
# itself, an unnamed native one.
THREAD_STARTERS = {
    "python": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='poller', daemon=True).start()\n",
        "Python thread 'poller'",
    ),
    "native": (
        "import _thread, ctypes, time\n"
        "named = _thread.allocate_lock()\n"
        "named.acquire()\n"
        "def run():\n"
        "    ctypes.CDLL(None).prctl(15, b'gmain')  # PR_SET_NAME, as GLib's thread does\n"
        "    named.release()\n"
        "    time.sleep(3600)\n"
        "_thread.start_new_thread(run, ())\n"
        "named.acquire()\n",
        "native thread 'gmain'",
    ),
    "unnamed": (
        "import _thread, time\n_thread.start_new_thread(time.sleep, (3600,))\n",
        "1 unnamed native threads, OpenBLAS's workers being 0",
    ),
}


@pytest.mark.parametrize("kind", THREAD_STARTERS)
def test_a_server_holding_an_unknown_thread_runs_the_step_cold(
    tmp_path: Path, monkeypatch, kind: str
) -> None:
    import json

    source, described = THREAD_STARTERS[kind]
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "starts_a_thread.py").write_text(source)
    monkeypatch.setenv("PYTHONPATH", str(modules))
    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    started = forkserver.start(["json", "starts_a_thread"])
    assert started is not None
    try:
        launcher = _launch(_step(tmp_path), "run.py", "6", "x", env=_env(started))
        out, err = launcher.communicate(timeout=120)
    finally:
        started.stop()
    assert launcher.returncode == 6, err
    assert err.splitlines() == [
        "util_lib.forkserver: the fork server holds threads unsafe to fork "
        f"({described}); starting the step cold",
        "to stderr",
    ]
    seen = json.loads(out)
    assert seen["pid"] == launcher.pid and seen["argv"] == ["run.py", "6", "x"]


def test_the_known_native_threads_do_not_stop_a_fork(tmp_path: Path, monkeypatch) -> None:
    """pyarrow's jemalloc background thread and numpy's OpenBLAS worker: the server holds
    them (named jemalloc_bg_thd, and unnamed) and forks all the same."""
    import json

    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    started = forkserver.start(["numpy", "pyarrow"])
    assert started is not None
    try:
        tasks = Path(f"/proc/{started.process.pid}/task")
        main = (tasks / str(started.process.pid) / "comm").read_text()
        deadline = time.monotonic() + 60
        others: list[str] = []
        while "jemalloc_bg_thd\n" not in others or main not in others:  # one of each
            assert time.monotonic() < deadline, others
            time.sleep(0.1)
            others = [
                (t / "comm").read_text() for t in tasks.iterdir() if t.name != tasks.parent.name
            ]
        launcher = _launch(_step(tmp_path), "run.py", "0", env=_env(started))
        out, err = launcher.communicate(timeout=120)
    finally:
        started.stop()
    assert launcher.returncode == 0, err
    assert json.loads(out)["ppid"] == started.process.pid


def test_a_stalled_client_holds_no_step_up(tmp_path: Path, monkeypatch) -> None:
    """A client that sends half a request and holds its connection: the next launcher is
    served warm all the same, and the stalled connection is dropped."""
    import json
    import struct

    monkeypatch.delenv(FORKSERVER_ENV, raising=False)
    started = forkserver.start(["json"])
    assert started is not None
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    launcher = None
    try:
        stalled.connect(started.address)
        stalled.sendall(struct.pack("!I", 1000) + b'{"mode": "pa')
        launcher = _launch(_step(tmp_path), "run.py", "0", env=_env(started))
        out, err = launcher.communicate(timeout=60)
        assert launcher.returncode == 0, err
        assert json.loads(out)["ppid"] == started.process.pid
        stalled.settimeout(60)
        assert stalled.recv(1) == b"", "the stalled connection was kept"
    finally:
        stalled.close()
        if launcher is not None and launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        started.stop()
