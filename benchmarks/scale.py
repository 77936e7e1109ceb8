"""The pipeline on N times the data: wall seconds and peak memory per step.

    python benchmarks/scale.py --factor 10            # one size
    python benchmarks/scale.py --factor 1 10 100      # several, with the time ratio to N=1

The N x dataset is the shared one resampled with a fixed seed (rows drawn with replacement),
with small Gaussian noise on the numerical features so rows are not plain copies (the
preprocess step drops exact duplicates). Each size runs the full pipeline with
`mlflow run . --env-manager local` on a fresh store; every step logs its own peak RSS as the
MLflow metric `peak_rss_mb`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import DATA, isolated_env, mlflow_run

STEPS = ("get_data", "preprocess", "check_data", "segregate", "train_random_forest", "evaluate")
NOISY = ("danceability", "energy", "speechiness", "acousticness", "liveness", "valence", "tempo")


def make_dataset(source: Path, factor: int, destination: Path, seed: int = 0) -> int:
    """Write the ``factor`` x dataset to ``destination``; return its number of rows."""
    import numpy as np
    import pandas as pd

    df = pd.read_parquet(source)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(df), size=len(df) * factor)
    big = df.iloc[rows].reset_index(drop=True)
    if factor > 1:
        for column in NOISY:
            values = big[column].to_numpy(dtype="float64")
            noise = rng.normal(0.0, 0.01 * np.nanstd(values), size=len(values))
            # Keep the data inside the ranges the data check enforces.
            low, high = np.nanmin(values), np.nanmax(values)
            big[column] = np.clip(values + noise, low, high)
    big.to_parquet(destination, index=False)
    return len(big)


def run_size(source: Path, factor: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """Run the pipeline on the ``factor`` x data; return wall seconds and per-step (s, MiB)."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{factor}x-") as tmp:
        store = Path(tmp)
        data = store / f"genres_{factor}x.parquet"
        rows = make_dataset(source, factor, data)
        print(f"N={factor}: {rows:,} rows ({data.stat().st_size / 1e6:.0f} MB)", flush=True)
        wall, _ = mlflow_run(store, f"data.file_url={data} hydra.run.dir={store / 'outputs'}")
        uri = isolated_env(store)["MLFLOW_TRACKING_URI"]
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("music_genre_classification")
        steps = {}
        for run in client.search_runs([experiment.experiment_id]):
            step = run.data.tags.get("util_lib.step")
            if step in STEPS:
                seconds = (run.info.end_time - run.info.start_time) / 1000
                steps[step] = (seconds, run.data.metrics.get("peak_rss_mb", float("nan")))
        return wall, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    walls = {}
    for factor in args.factor:
        wall, steps = run_size(args.data.resolve(), factor)
        walls[factor] = wall
        print(f"{'step':<20} {'seconds':>8} {'peak RSS MiB':>13}")
        for step in STEPS:
            seconds, rss = steps[step]
            print(f"{step:<20} {seconds:8.1f} {rss:13.0f}")
        peak = max(rss for _, rss in steps.values())
        print(f"{'total (wall)':<20} {wall:8.1f}   max peak RSS {peak:.0f} MiB\n")
    if 1 in walls:
        for factor, wall in walls.items():
            if factor != 1:
                print(f"N={factor}: {wall / walls[1]:.2f} x the wall time of N=1")


if __name__ == "__main__":
    main()
