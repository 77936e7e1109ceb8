"""The pipeline's cost over the work it does, measured side by side in one run.

    python benchmarks/pipeline.py [--data dataset/genres_mod.parquet]

(a) baseline: the six steps' work in one plain Python process with no tracking (read, dedupe,
    split, fit the same pipeline, score), with the project's own functions;
(b) `mlflow run . --env-manager local` cold, on a fresh tracking store;
(c) a re-run of `train_random_forest,evaluate` only, on that store.

Prints wall seconds per step and in total, and the ratios b/a and c/a.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, REPO, mlflow_run

BASELINE = """
import time
t0 = time.perf_counter()
import pandas as pd
from omegaconf import OmegaConf
from preprocess.cleaning import preprocess
from segregate.split import split_data
from train_random_forest.pipeline import build_pipeline, split_train_val, train_and_validate
from evaluate.scoring import score_model
config = OmegaConf.load("config.yaml")
model_config = OmegaConf.to_container(config.random_forest_pipeline, resolve=True)
data = config.data
df = preprocess(pd.read_parquet({data!r}))
train, test = split_data(df, data.test_size, config.main.random_seed, data.stratify)
X_train, X_val, y_train, y_val = split_train_val(
    train, "genre", data.val_size, config.main.random_seed, data.stratify
)
pipe, used = build_pipeline(model_config)
pipe, val_auc = train_and_validate(pipe, used, X_train, y_train, X_val, y_val)
scores = score_model(pipe, test, target="genre")
seconds = time.perf_counter() - t0
print(f"BASELINE {{seconds:.2f}} s val_auc={{val_auc:.4f}} test_auc={{scores['auc']:.4f}}")
"""


def run_baseline(data: Path) -> float:
    """Seconds of the plain process, start-up and imports included."""
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
    print("  " + out.stdout.strip().splitlines()[-1])
    return seconds


def run_pipeline(store: Path, options: str) -> tuple[float, dict[str, float]]:
    """Seconds of one `mlflow run .` and the per-step seconds from its summary table."""
    seconds, stdout = mlflow_run(
        store, f"{options} hydra.run.dir={store / 'outputs' / str(time.time_ns())}"
    )
    steps = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "FINISHED":
            steps[parts[0]] = float(parts[2])
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    data = args.data.resolve()
    print(f"cores: {os.cpu_count()}  data: {data}")

    print("(a) plain process, no tracking")
    a = run_baseline(data)
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        store = Path(tmp)
        print("(b) mlflow run . (cold, fresh store)")
        b, b_steps = run_pipeline(store, f"data.file_url={data}")
        print("(c) mlflow run . main.execute_steps='train_random_forest,evaluate'")
        c, c_steps = run_pipeline(store, "main.execute_steps='train_random_forest,evaluate'")

    print("\nstep                 (b) s   (c) s")
    for step in b_steps:
        c_s = f"{c_steps[step]:6.1f}" if step in c_steps else "     -"
        print(f"{step:<20} {b_steps[step]:6.1f}  {c_s}")
    print(f"{'total (wall)':<20} {b:6.1f}  {c:6.1f}   baseline (a): {a:.1f} s")
    print(f"\nb/a = {b / a:.2f}   (target <= 3.5, stretch 3.0)")
    print(f"c/a = {c / a:.2f}   (target <= 2.5)")


if __name__ == "__main__":
    main()
