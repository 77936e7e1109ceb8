"""What a step process costs before and after its work: the floor under `benchmarks/pipeline.py`.

    python benchmarks/step_startup.py [--repeat 3]
    python benchmarks/step_startup.py --console [--repeat 5]

Each step of the pipeline is a process of its own (`mlflow run` of its MLproject). This times,
in fresh processes on a fresh SQLite store and with W&B offline, the phases every step goes
through whatever its work, as the steps do them (util_lib.step.run, util_lib.step.process_exit):

- start: the interpreter, up to the first line of the step;
- import mlflow;
- MLflow run: the SQLAlchemy store (first use in the process) and ``mlflow.start_run``,
  with MLflow's Databricks probe skipped as the steps do; and the same over REST, through the
  tracking server that ``main.py`` serves on the store for a pipeline's steps
  (util_lib/pipeline/tracking_server.py);
- W&B: ``import wandb``, ``wandb.init(mode="offline")`` and ``finish``;
- exit: after the run has ended, until the process is gone; once the ordinary way and once
  with ``util_lib.step.process_exit.exit_quickly``;

and, for the pipeline as a whole, `mlflow run` of an MLproject whose only command is
``python -c pass`` (the `mlflow` command's own start, its run and the launch of the command).
Prints the median of --repeat rounds per phase, and the floor of a pipeline of six steps.

With ``--console``, it compares instead what W&B's console capture (``files/output.log`` of the
run, util_lib.step.trackers' ``WANDB_CONSOLE``) costs a step: a step-like process that opens a run
through util_lib.step.run (W&B offline), logs --lines log lines and prints as many, and closes
it, with the capture off and on, alternating, in fresh processes; medians of --repeat rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, isolated_env

# One step's bookkeeping without its work; prints "<phase> <time.time()>" after each phase.
STEP = """
import sys, time
print("start", time.time(), flush=True)
import mlflow
print("import_mlflow", time.time(), flush=True)
from util_lib.step.trackers import WANDB_CONSOLE, skip_databricks_probe
skip_databricks_probe()
mlflow.start_run(run_name="startup")
print("mlflow_run", time.time(), flush=True)
import wandb
run = wandb.init(project="startup", mode="offline",
                 settings=wandb.Settings(silent=True, console=WANDB_CONSOLE))
run.log({"x": 1.0})
run.finish()
print("wandb", time.time(), flush=True)
mlflow.end_run()
print("ended", time.time(), flush=True)
if sys.argv[1] == "quick":
    from util_lib.step.process_exit import exit_quickly
    exit_quickly()
"""

# A step's tracked run through util_lib.step.run with W&B's console capture argv[1] (off, wrap).
CONSOLE_STEP = """
import logging, sys, time
t0 = time.perf_counter()
import util_lib.step.run as tracking
import util_lib.step.trackers as trackers
from util_lib.step.process_exit import exit_quickly
trackers.WANDB_CONSOLE = sys.argv[1]
t1 = time.perf_counter()
run = tracking.open_run("console_bench", "bench")
t2 = time.perf_counter()
log = logging.getLogger("console_bench")
for i in range(int(sys.argv[2])):
    log.info("line %d of the step's work, as long as a usual log line of a step", i)
    print(f"printed line {i}", flush=True)
t3 = time.perf_counter()
run.close()
t4 = time.perf_counter()
print("times", t2 - t1, t3 - t2, t4 - t3, t4 - t0, file=sys.__stderr__, flush=True)
exit_quickly()
"""

EMPTY_PROJECT = """name: empty
entry_points:
  main:
    command: "python -c pass"
"""

PHASES = ("start", "import_mlflow", "mlflow_run", "wandb", "ended")


def time_step(store: Path, exit_mode: str, tracking_uri: str | None = None) -> dict[str, float]:
    """Seconds of each phase of one step-like process (on ``tracking_uri``, else the store)."""
    env = isolated_env(store)
    env["PYTHONPATH"] = str(REPO)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    launched = time.time()
    out = subprocess.run(
        [sys.executable, "-c", STEP, exit_mode],
        cwd=store,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    gone = time.time()
    stamps = dict(line.split() for line in out.stdout.splitlines() if line.split()[0] in PHASES)
    marks = [launched] + [float(stamps[p]) for p in PHASES]
    seconds = {p: marks[i + 1] - marks[i] for i, p in enumerate(PHASES) if p != "ended"}
    seconds["exit"] = gone - float(stamps["ended"])
    seconds["total"] = gone - launched
    return seconds


def time_empty_mlflow_run(store: Path) -> float:
    """Wall seconds of `mlflow run` of a project whose command does nothing."""
    project = store / "empty_project"
    project.mkdir(exist_ok=True)
    (project / "MLproject").write_text(EMPTY_PROJECT)
    start = time.perf_counter()
    subprocess.run(
        ["mlflow", "run", str(project), "--env-manager", "local"],
        cwd=store,
        env=isolated_env(store),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def time_console_step(store: Path, console: str, lines: int) -> dict[str, float]:
    """Seconds of one step-like process with W&B's console capture ``console`` (off, wrap)."""
    env = {**isolated_env(store), "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    env["WANDB_PROJECT"] = "console_bench"
    launched = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CONSOLE_STEP, console, str(lines)],
        cwd=store,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - launched
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("times ")]
    opened, work, close, _ = (float(v) for v in line.split()[1:])
    run = opened + work + close
    return {"open": opened, "work": work, "close": close, "run": run, "wall": wall}


def compare_console(repeat: int, lines: int) -> None:
    """Print the medians of a step-like process with W&B's console capture off and on."""
    modes = ("off", "wrap")
    rounds: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        store = Path(tmp)
        time_console_step(store, "off", lines)  # creates the database: not a step's cost
        for _ in range(repeat):
            for mode in modes:
                rounds[mode].append(time_console_step(store, mode, lines))
        logs = sorted(store.glob("wandb/offline-run-*/files/output.log"))
        kept = sum(f"line {lines - 1} of the step's work" in p.read_text() for p in logs)
    print(
        f"cores: {os.cpu_count()}  rounds: {repeat} (medians)  "
        f"{lines} log lines + {lines} printed lines per step"
    )
    print(f"\n{'one step (W&B offline)':<34}" + "".join(f"{'console=' + m:>16}" for m in modes))
    labels = {
        "open": "open_run (MLflow + W&B init)",
        "work": "the logging itself",
        "close": "close (W&B finish)",
        "run": "open + work + close",
        "wall": "process wall time",
    }
    for key, label in labels.items():
        cells = "".join(f"{statistics.median(r[key] for r in rounds[m]):>15.3f}s" for m in modes)
        print(f"{label:<34}{cells}")
    # The capture acts on each write and at finish; the start of a process (MLflow's store
    # above all) varies by more than that on a shared machine, so the cost is read off the
    # phases it touches.
    cost = {
        key: statistics.median(r[key] for r in rounds["wrap"])
        - statistics.median(r[key] for r in rounds["off"])
        for key in ("work", "close")
    }
    print(
        f"\ncost of the capture: {cost['work'] + cost['close']:+.3f} s a step "
        f"(writes {cost['work']:+.3f} s, finish {cost['close']:+.3f} s; "
        f"{1000 * cost['work'] / (2 * lines):.2f} ms a line); "
        f"output.log files holding the last line: {kept} of {repeat} captured runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--console",
        action="store_true",
        help="compare a step with W&B's console capture off and on instead",
    )
    parser.add_argument("--lines", type=int, default=100, help="log lines a step writes")
    args = parser.parse_args()
    if args.console:
        compare_console(args.repeat, args.lines)
        return
    print(f"cores: {os.cpu_count()}  rounds: {args.repeat} (medians)")
    ordinary, quick, served, empty = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        store = Path(tmp)
        time_step(store, "ordinary")  # creates the database: not a step's cost
        from util_lib.pipeline.tracking_server import PipelineServer

        server = PipelineServer(isolated_env(store)["MLFLOW_TRACKING_URI"], str(store / "mlruns"))
        try:
            for _ in range(args.repeat):
                ordinary.append(time_step(store, "ordinary"))
                quick.append(time_step(store, "quick"))
                served.append(time_step(store, "quick", server.url))
                empty.append(time_empty_mlflow_run(store))
        finally:
            server.stop()

    def median(rounds: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(f"\n{'phase of one step':<34}{'ordinary exit':>14}{'exit_quickly':>14}{'over REST':>14}")
    labels = {
        "start": "interpreter start",
        "import_mlflow": "import mlflow",
        "mlflow_run": "MLflow store + start_run",
        "wandb": "W&B import, offline init, finish",
        "exit": "exit after the run",
        "total": "total",
    }
    for key, label in labels.items():
        print(
            f"{label:<34}{median(ordinary, key):>13.2f}s{median(quick, key):>13.2f}s"
            f"{median(served, key):>13.2f}s"
        )
    print(
        f"(over REST: exit_quickly, on the tracking server main.py serves for a pipeline; "
        f"started in {server.start_seconds:.2f} s)"
    )
    empty_s = statistics.median(empty)
    step_s = median(served, "total")
    print(f"\n`mlflow run` of an empty project: {empty_s:.2f} s")
    print(
        f"floor of six steps under one `mlflow run`: {empty_s:.1f} + 6 x {step_s:.2f} = "
        f"{empty_s + 6 * step_s:.1f} s (steps over REST), before the driver's own start and "
        "any work"
    )


if __name__ == "__main__":
    main()
