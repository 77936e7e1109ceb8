"""A sweep's wall time with the basic launcher (one job after another) and with joblib.

    python benchmarks/sweep.py [--data dataset/genres_mod.parquet]

On a fresh tracking store, one run prepares the data (get_data, preprocess, check_data,
segregate; not timed). Then the same 8-job sweep of `train_random_forest,evaluate` (max_depth
10, 15, 20, 25 x tfidf.max_features 10, 20; config.yaml's number of trees) runs three times
through `mlflow run . -m`:

(a) hydra/launcher=basic, forest n_jobs=-1: the baseline, jobs in turn, each fit on all cores;
(b) hydra/launcher=joblib (one worker per core), forest n_jobs=1: a core per job;
(c) hydra/launcher=joblib, forest n_jobs=-1: each job's fit asks for every core.

Most of a job is not the fit: two step processes start, import their libraries, read and write
the store and W&B, score and plot. Those parts are single-threaded, so running jobs side by
side pays even though the forest alone could already use both cores. With n_jobs=-1 in every
parallel job, the fits oversubscribe the cores (2 jobs x 2 threads on 2 cores), hence (b).
Prints each sweep's wall seconds, the jobs' summed fit seconds (from the sweep report) and the
speed-ups a/b and a/c. The models are the same in all three (n_jobs does not change a forest).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

from common import DATA, mlflow_run

SWEEP = (
    "main.execute_steps='train_random_forest,evaluate' "
    "model.max_depth=10,15,20,25 "
    "random_forest_pipeline.tfidf.max_features=10,20"
)
ARMS = {
    "a": ("basic", -1),
    "b": ("joblib", 1),
    "c": ("joblib", -1),
}


def sweep(store: Path, name: str, launcher: str, n_jobs: int) -> tuple[float, float, int]:
    """Run the sweep; return wall seconds, summed fit seconds and the number of models."""
    sweep_dir = store / f"sweep_{name}"
    options = (
        f"hydra/launcher={launcher} {SWEEP} model.n_jobs={n_jobs} hydra.sweep.dir={sweep_dir} -m"
    )
    seconds, _ = mlflow_run(store, options)
    with (sweep_dir / "sweep_report.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    if len(rows) != 8 or {r["status"] for r in rows} != {"FINISHED"}:
        raise SystemExit(f"sweep {name}: expected 8 finished jobs, got {rows}")
    models = {r["model_export"] for r in rows}
    return seconds, sum(float(r["fit_seconds"]) for r in rows), len(models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; data: {args.data}")
    with tempfile.TemporaryDirectory(prefix="sweep_bench_") as tmp:
        store = Path(tmp)
        prepare = (
            f"data.file_url={args.data.resolve()} "
            "main.execute_steps='get_data,preprocess,check_data,segregate' "
            f"hydra.run.dir={store / 'outputs'}"
        )
        print(f"preparing the data: {mlflow_run(store, prepare)[0]:.1f} s (not counted)")
        results = {}
        for name, (launcher, n_jobs) in ARMS.items():
            results[name] = sweep(store, name, launcher, n_jobs)
            wall, fit, models = results[name]
            print(
                f"({name}) launcher={launcher:<6} forest n_jobs={n_jobs:>2}: {wall:6.1f} s wall, "
                f"{fit:5.1f} s of fits, {models} model versions"
            )
    base = results["a"][0]
    print(f"speed-up a/b (joblib, n_jobs=1):  {base / results['b'][0]:.2f}x")
    print(f"speed-up a/c (joblib, n_jobs=-1): {base / results['c'][0]:.2f}x")


if __name__ == "__main__":
    main()
