"""What the step cache's check of a reused run's outputs costs: hashing them where they are.

    python benchmarks/verify_outputs.py --factor 1 100

For each size, the N x dataset (``scale.py``'s) goes through the whole pipeline on a fresh
store; then every version that a fully cached pipeline would reuse (what each step's run
wrote) is checked as ``StepCache.lookup`` checks it (``store.check_files``: on this local
store, the files hashed in place), timed, ``--repeat`` times (the best is shown; the files were
just written, so they are in the page cache, as on a machine that ran the pipeline recently).
Last, the same command again, every step from the cache: its wall time, the checks included.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from common import DATA, isolated_env, mlflow_run
from scale import make_dataset

from util_lib.artifacts.digests import file_sha256


def check_outputs(uri: str, repeat: int) -> list[tuple[str, int, float]]:
    """(version, bytes, best seconds) of each version the pipeline's step runs wrote."""
    from mlflow import MlflowClient

    from util_lib.artifacts.mlflow_store import MlflowArtifactStore
    from util_lib.names import STEP_TAG, WRITTEN_TAG

    client = MlflowClient(uri)
    store = MlflowArtifactStore(uri, "music_genre_classification")
    experiment = client.get_experiment_by_name("music_genre_classification")
    specs = []
    for run in client.search_runs([experiment.experiment_id], order_by=["start_time ASC"]):
        if STEP_TAG in run.data.tags:
            specs += [s for s in run.data.tags.get(WRITTEN_TAG, "").split(",") if s]
    found = []
    for spec in specs:
        version = store.resolve(spec)
        kept = Path(store.files_uri(version).removeprefix("file://"))
        size = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            store.check_files(version)
            best = min(best, time.perf_counter() - start)
        found.append((spec, size, best))
    return found


def run_size(source: Path, factor: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-verify-{factor}x-") as tmp:
        store = Path(tmp)
        data = store / f"genres_{factor}x.parquet"
        rows = make_dataset(source, factor, data)
        print(f"N={factor}: {rows:,} rows ({data.stat().st_size / 1e6:.0f} MB)", flush=True)
        pinned = f"data.file_url={data} data.sha256={file_sha256(data)}"
        options = f"{pinned} hydra.run.dir={store / 'outputs'}"
        first, _ = mlflow_run(store, options)
        print(f"  first pipeline run: {first:.1f} s", flush=True)
        checks = check_outputs(isolated_env(store)["MLFLOW_TRACKING_URI"], repeat)
        print(f"  {'version':<24} {'MB':>9} {'check s':>8} {'MB/s':>7}")
        for spec, size, seconds in checks:
            rate = size / 1e6 / seconds if seconds else float("inf")
            print(f"  {spec:<24} {size / 1e6:9.1f} {seconds:8.3f} {rate:7.0f}")
        total = sum(s for *_, s in checks)
        megabytes = sum(b for _, b, _ in checks) / 1e6
        print(f"  {'all checks':<24} {megabytes:9.1f} {total:8.3f}")
        again, out = mlflow_run(store, options)
        cached = len(re.findall(r"^\[\d+/\d+\] \w+ CACHED ", out, re.M))
        print(f"  the same command again: {again:.1f} s ({cached} steps CACHED)\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")
    for factor in args.factor:
        run_size(args.data.resolve(), factor, args.repeat)


if __name__ == "__main__":
    main()
