"""The commands README.md shows in its quick start, results, serving and sweep sections run as
written, and print what README shows.

In a copy of the project (what a clone holds), each shell block of those sections runs in
order, one command at a time, through ``bash -c``, in an environment like a new user's: the
pipeline's default store (``./mlflow.db``), W&B offline, no ``MLFLOW_*``/``WANDB_*`` of the
caller, the tests' interpreter first on ``PATH``. So one pipeline run, one server and one sweep
in all (a few minutes).

README's conventions, which this test reads:

- a ``console`` block: ``$ command`` lines (a line ending with ``\\`` continues), each followed by
  the output README shows; a ``…`` line stands for lines left out. The command's output must
  hold README's lines in that order, compared by shape: run ids and digests (12 or more hex
  digits), durations (numbers with one decimal) and the copy's path
  (``/path/to/music_genre_classification``) stand for any such value; counts, versions and
  scores must be the same;
- a ``bash`` block: each line is a command, checked for its exit status only;
- ``<!-- readme-test: skip (why) -->`` just before a block: not run (``pip install``, a file of
  the reader's own);
- ``<!-- readme-test: write PATH -->`` just before a block: the block is a file the reader
  writes, written to ``PATH`` under the project (e.g. a model's file in ``conf/model/``);
- a server (``python -m serving serve``, ``mlflow ui``) starts in the background on a free port
  in place of 5000 (another program may hold 5000 on the test machine), is ready when its shown
  lines are printed (or ``mlflow ui`` answers), and is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from serving.local_server import free_port
from tests.pipeline_runs import pipeline_env

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SECTIONS = ("Quick start", "Where the results are", "Serving", "Sweeps")
PLACEHOLDER_PATH = "/path/to/music_genre_classification"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\b")
WRITE = re.compile(r"^<!--\s*readme-test:\s*write\s+(\S+)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
SERVERS = re.compile(r"^(python -m serving serve|mlflow ui)\b")
GAP = "…"
# What a copy of the project leaves out: what runs write, and caches.
NOT_COPIED = (".git", ".venv*", "__pycache__", "mlruns", "mlflow.db", "wandb", "outputs",
              "multirun", "ml_pipeline.log", ".ruff_cache", ".pytest_cache")  # fmt: skip
TIMEOUT = 1500  # seconds for one command (a pipeline or a sweep on two busy cores)


@dataclass
class Command:
    """One command of README and the output lines it shows."""

    section: str
    text: str
    shown: list[str] = field(default_factory=list)
    checked: bool = False  # a console block's command: its output is compared
    write_to: str | None = None  # a file to write (``text``), not a command


def readme_commands(text: str, sections: tuple[str, ...] | None = SECTIONS) -> list[Command]:
    """The commands of ``sections`` of a Markdown text (None: every section), in order
    (skipped blocks left out)."""
    commands: list[Command] = []
    section, language, skip, previous = "", None, False, ""
    write: re.Match | None = None
    block: list[str] = []
    for line in text.splitlines():
        fence = FENCE.match(line)
        if language is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif fence:
                language, block, skip = fence[1], [], bool(SKIP.match(previous))
                write = WRITE.match(previous)
            if line.strip():
                previous = line.strip()
            continue
        if not fence or fence[1]:
            block.append(line)
            continue
        if sections is not None and section not in sections or skip:
            pass
        elif write:
            commands.append(Command(section, "\n".join(block) + "\n", write_to=write[1]))
        elif language in ("console", "bash"):
            commands += _parse(section, language, block)
        language = None
    return commands


def _parse(section: str, language: str, lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for line in lines:
        if language == "bash":
            if line.strip() and not line.lstrip().startswith("#"):
                if continued:
                    commands[-1].text += "\n" + line
                else:
                    commands.append(Command(section, line))
                continued = line.endswith("\\")
            continue
        if line.startswith("$ ") or continued:
            if continued:
                commands[-1].text += "\n" + line
            else:
                commands.append(Command(section, line[2:], checked=True))
            continued = line.endswith("\\")
        elif commands and line.strip():
            commands[-1].shown.append(line)
    return commands


def shape(line: str, workdir: Path | None = None) -> str:
    """A line with what differs from run to run replaced (see the module docstring)."""
    if workdir is not None:
        line = line.replace(str(workdir), PLACEHOLDER_PATH)
    line = re.sub(r"\b[0-9a-f]{12,}\b", "<id>", line)
    line = re.sub(r"(?<![\d.])\d+\.\d(?![\d.])", "<t>", line)
    return " ".join(line.split())


def missing_lines(shown: list[str], printed: str, workdir: Path) -> list[str]:
    """README's lines (in order, ``…`` aside) that the output does not hold, by shape."""
    output = [shape(line, workdir) for line in printed.splitlines() if line.strip()]
    position, missing = 0, []
    for line in shown:
        if line.strip() == GAP:
            continue
        wanted = shape(line)
        try:
            position = output.index(wanted, position) + 1
        except ValueError:
            missing.append(line)
    return missing


def copy_project(folder: Path) -> Path:
    """A copy of the project in ``folder``, as a clone has it, under a name of its own."""
    copy = folder / "music_genre_classification"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*NOT_COPIED))
    return copy


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project, as a clone has it, under a name of its own."""
    return copy_project(tmp_path_factory.mktemp("readme"))


def _env(project: Path) -> dict[str, str]:
    env = pipeline_env(project, wandb_mode="offline")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # `mlflow ui` starts MLflow's job runner (GenAI jobs: a dozen queue consumers, ~3 s of CPU
    # each) that no command here uses; what README's commands print does not change.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


@contextlib.contextmanager
def _background(
    command: Command, cwd: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """A server started from ``command``, and its log; stopped (its whole session) when the
    block ends."""
    log = cwd.parent / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", f"exec {command.text}"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield server, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait_until_ready(
    server: subprocess.Popen, command: Command, log: Path, port: int, project: Path
) -> str:
    """The server's output once it shows README's lines and answers on ``port`` (a server
    prints its address just before it listens)."""
    deadline = time.monotonic() + 300
    while True:
        printed = log.read_text(errors="replace")
        shows = not missing_lines(command.shown, printed, project)
        if shows and _answers(f"http://127.0.0.1:{port}/health"):
            return printed
        assert server.poll() is None, f"{command.text} exited {server.returncode}:\n{printed}"
        assert time.monotonic() < deadline, f"{command.text} not ready:\n{printed[-4000:]}"
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _on_port(command: Command, port: int) -> Command:
    """``command`` on ``port`` instead of MLflow's and README's 5000."""
    text = command.text.replace("--port 5000", f"--port {port}").replace(":5000/", f":{port}/")
    if SERVERS.match(text) and "--port" not in text:
        text += f" --port {port}"
    if text == command.text:  # e.g. the pipeline's own `mlflow ui` hint: MLflow's default port
        return command
    shown = [line.replace(":5000/", f":{port}/") for line in command.shown]
    return Command(command.section, text, shown, command.checked)


def test_readme_shows_the_commands_it_promises() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    sections = {c.section for c in commands}
    assert sections == set(SECTIONS), sections
    texts = [c.text for c in commands]
    assert "mlflow run . --env-manager local" in texts
    assert any(t.startswith("python -m serving serve") for t in texts), texts
    assert any(' -m"' in t for t in texts), "no sweep"
    assert all(c.shown for c in commands if c.checked and "curl" in c.text)


def test_the_shape_of_a_line() -> None:
    shown = "[1/6] get_data FINISHED 4.6 s (run 70e4aad959af43f696e2b2de720885b2)"
    assert shape(shown) == shape("[1/6] get_data FINISHED 12.0 s (run 0123456789abcdef0123)")
    assert shape("val_auc=0.9539") != shape("val_auc=0.9540")
    assert shape("verified 16 files") != shape("verified 13 files")
    assert missing_lines(["a", GAP, "c"], "a\nb\nc\n", Path("/x")) == []
    assert missing_lines(["c", "a"], "a\nb\nc\n", Path("/x")) == ["a"]


@pytest.mark.e2e
def test_the_readme_commands_run_and_print_what_readme_shows(project: Path) -> None:
    run_commands(readme_commands(README.read_text(encoding="utf-8")), project)


def run_commands(commands: list[Command], project: Path) -> None:
    """Run ``commands`` in order in ``project`` (see the module docstring), each one's output
    checked against what the text shows; servers stopped at the end."""
    env = _env(project)
    port = free_port()
    with contextlib.ExitStack() as servers:
        for command in commands:
            if command.write_to:
                (project / command.write_to).write_text(command.text, encoding="utf-8")
                continue
            command = _on_port(command, port)
            if SERVERS.match(command.text):
                server_port = port
                if command.text.startswith("mlflow ui"):  # the serving server takes `port`
                    server_port = free_port()
                    text = command.text.replace(f"--port {port}", f"--port {server_port}")
                    command = Command(command.section, text, command.shown, command.checked)
                server, log = servers.enter_context(_background(command, project, env))
                _wait_until_ready(server, command, log, server_port, project)
                continue
            result = subprocess.run(
                ["bash", "-c", command.text],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            printed = result.stdout + "\n" + result.stderr
            assert result.returncode == 0, (
                f"[{command.section}] {shlex.quote(command.text)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
            missing = missing_lines(command.shown, printed, project)
            assert missing == [], (
                f"[{command.section}] {command.text}\nREADME shows, the command did not print:\n"
                + "\n".join(missing)
                + f"\n--- it printed:\n{result.stdout[-6000:]}"
            )


def test_a_block_to_write_is_a_file_not_a_command() -> None:
    text = (
        "## Own\n<!-- readme-test: write conf/model/x.yaml -->\n```yaml\n_target_: a.B\n```\n"
        "```console\n$ echo hi\nhi\n```\n"
    )
    written, echo = readme_commands(text, sections=None)
    assert (written.write_to, written.text) == ("conf/model/x.yaml", "_target_: a.B\n")
    assert (echo.text, echo.shown, echo.write_to) == ("echo hi", ["hi"], None)
    assert readme_commands(text) == []  # not a section of README's
