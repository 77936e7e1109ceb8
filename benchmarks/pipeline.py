"""The pipeline's cost over the work it does, measured side by side in one run.

    python benchmarks/pipeline.py [--data dataset/genres_mod.parquet] [--repeat 3]
    python benchmarks/pipeline.py --env UTIL_LIB_TRACKING_SERVER=false   # a lever off
    python benchmarks/pipeline.py --env UTIL_LIB_FORKSERVER=false        # every step cold

(a) baseline: the six steps' work in one plain Python process with no tracking (read and
    check the file, dedupe, data checks, split, fit and validate the same pipeline, score),
    with the project's own functions, timed step by step;
(b) `mlflow run . --env-manager local` cold, on a fresh tracking store;
(c) `train_random_forest,evaluate` again on that store with `main.cache=false` (a real re-run);
(d) the command of (b) again, nothing changed: every step comes from the step cache;
(e) (b) with one forest parameter changed: only train and evaluate run.

Each round runs all five; with ``--repeat N`` the figures are the medians of N rounds. Prints,
for each step, its wall time in (b), the same work's time in (a) and the difference (the
step's overhead), the driver's own time in (b) (its start and end: the wall time that no step
accounts for), then the totals, the ratios ``b/a``, ``c/a``, ``d/a``, ``e/a`` and which of
issue 14's targets are met.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, REPO, mlflow_run

# The plain process: each step's work with the project's functions, no tracking, no processes.
BASELINE = """
import json, time
t0 = time.perf_counter()
import hashlib
import pandas as pd
from omegaconf import OmegaConf
from check_data.checks import (KL_THRESHOLD, check_columns_and_dtypes, check_labels,
    check_missing_values, check_value_ranges, kl_divergence_check, ks_drift)
from util_lib.step.contract import default_contract
from preprocess.cleaning import preprocess
from segregate.split import split_data
from train_random_forest.pipeline import build_pipeline, split_train_val, train_and_validate
from evaluate.scoring import score_model
from train_random_forest.model_config import read_model_config
config = OmegaConf.load("config.yaml")
model_config = read_model_config("config.yaml")
contract = default_contract()
NUMERICAL_COLUMNS, CATEGORICAL_COLUMNS = contract.drift_columns()
data = config.data
stratify = contract.target  # data.stratify: ${{dataset.target}}
steps = {{"imports": time.perf_counter() - t0}}

t = time.perf_counter()
raw_bytes = open({data!r}, "rb").read()
hashlib.sha256(raw_bytes).hexdigest()
raw = pd.read_parquet({data!r})
steps["get_data"] = time.perf_counter() - t

t = time.perf_counter()
df = preprocess(raw)
steps["preprocess"] = time.perf_counter() - t

t = time.perf_counter()
for check in (check_columns_and_dtypes, check_labels, check_missing_values,
              check_value_ranges):
    check(df)
ks_drift(df, df, NUMERICAL_COLUMNS, data.ks_alpha)
kl_divergence_check(df, df, CATEGORICAL_COLUMNS, KL_THRESHOLD)
steps["check_data"] = time.perf_counter() - t

t = time.perf_counter()
train, test = split_data(df, data.test_size, config.main.random_seed, stratify)
steps["segregate"] = time.perf_counter() - t

t = time.perf_counter()
X_train, X_val, y_train, y_val = split_train_val(
    train, contract.target, data.val_size, config.main.random_seed, stratify
)
pipe, used = build_pipeline(model_config)
pipe, val_auc = train_and_validate(pipe, used, X_train, y_train, X_val, y_val)
steps["train_random_forest"] = time.perf_counter() - t

t = time.perf_counter()
scores = score_model(pipe, test, target=contract.target)
steps["evaluate"] = time.perf_counter() - t
print("BASELINE " + json.dumps({{"steps": steps, "val_auc": val_auc, "test_auc": scores["auc"]}}))
"""
STEP_OVERHEAD_TARGET = 1.5  # issue 14: no step's overhead above it (seconds)
STEPS = ("get_data", "preprocess", "check_data", "segregate", "train_random_forest", "evaluate")
_PROGRESS = re.compile(r"^\[\d+/\d+\] (\w+) (FINISHED|CACHED) (\d+\.\d+) s", re.M)


def run_baseline(data: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of the plain process (start-up included) and each step's work in it."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BASELINE.format(data=str(data))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("BASELINE "))
    return seconds, result["steps"]


def run_pipeline(store: Path, options: str, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of one `mlflow run .` and each step's seconds from its progress lines."""
    seconds, stdout = mlflow_run(
        store, f"{options} hydra.run.dir={store / 'outputs' / str(time.time_ns())}", **env
    )
    return seconds, {m[0]: float(m[2]) for m in _PROGRESS.findall(stdout)}


def one_round(data: Path, env: dict[str, str]) -> dict[str, tuple[float, dict[str, float]]]:
    """(a) to (e) once, on a fresh store; ``env``: variables of the pipeline runs."""
    figures = {"a": run_baseline(data)}
    common = f"data.file_url={data}"
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        store = Path(tmp)
        figures["b"] = run_pipeline(store, common, env)
        figures["c"] = run_pipeline(
            store, "main.execute_steps='train_random_forest,evaluate' main.cache=false", env
        )
        figures["d"] = run_pipeline(store, common, env)
        figures["e"] = run_pipeline(store, f"{common} model.max_depth=13", env)
    return figures


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of the pipeline runs, e.g. UTIL_LIB_TRACKING_SERVER=false",
    )
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    data = args.data.resolve()
    print(f"cores: {os.cpu_count()}  data: {data}  rounds: {args.repeat}  env: {env or '-'}")

    rounds = []
    for number in range(1, args.repeat + 1):
        figures = one_round(data, env)
        rounds.append(figures)
        totals = "  ".join(f"{k} {v[0]:.1f} s" for k, v in figures.items())
        print(f"round {number}: {totals}", flush=True)

    def total(kind: str) -> float:
        return _median([r[kind][0] for r in rounds])

    def step(kind: str, name: str) -> float:
        return _median([r[kind][1][name] for r in rounds if name in r[kind][1]])

    print(f"\nmedians of {len(rounds)} round(s), seconds")
    print(f"{'step':<20} {'(b) wall':>9} {'(a) work':>9} {'overhead':>9} {'(c)':>6} {'(e)':>6}")
    overheads = {}
    for name in STEPS:
        wall, work = step("b", name), step("a", name)
        overheads[name] = wall - work
        print(
            f"{name:<20} {wall:9.2f} {work:9.2f} {wall - work:9.2f} "
            f"{step('c', name):6.1f} {step('e', name):6.1f}"
        )
    print(f"{'plain imports':<20} {'':9} {step('a', 'imports'):9.2f}")
    # The wall time of (b) that no step accounts for: `mlflow run`'s and the driver's start
    # (Hydra, the config check, the pipeline run), the lineage and summary at the end.
    driver = _median([r["b"][0] - sum(r["b"][1].values()) for r in rounds])
    print(f"{'driver (b) - steps':<20} {driver:9.2f}")
    a = total("a")
    print(
        f"\n(a) plain {a:.1f} s   (b) cold {total('b'):.1f} s   (c) train+evaluate again "
        f"{total('c'):.1f} s   (d) same again {total('d'):.1f} s   (e) one parameter "
        f"{total('e'):.1f} s"
    )
    b_a, c_a = total("b") / a, total("c") / a
    over = {k: round(v, 2) for k, v in overheads.items() if v > STEP_OVERHEAD_TARGET}
    print(
        f"b/a = {b_a:.2f}   (issue 14 target <= 6: {_met(b_a <= 6)}; stretch <= 3.5: "
        f"{_met(b_a <= 3.5)})"
    )
    print(f"c/a = {c_a:.2f}   (issue 14 target <= 3: {_met(c_a <= 3)})")
    print(
        f"step overhead <= {STEP_OVERHEAD_TARGET} s (issue 14): {_met(not over)}"
        + (f"; above it: {over}" if over else "")
    )
    print(f"d/a = {total('d') / a:.2f}   (issue 13 goal <= 1.5)")
    print(f"e/a = {total('e') / a:.2f}   (issue 13 goal <= c/a)")


if __name__ == "__main__":
    main()
