"""Serving cost: in-process pyfunc predict against HTTP /invocations, side by side in one run.

    python benchmarks/serving.py [--data dataset/genres_mod.parquet] [--model URI]

Without --model, trains the configured pipeline (config.yaml) on the training split and exports
it as the pipeline does (``predict_n_jobs`` included). Then, on the same test rows:

(a) in process: ``mlflow.pyfunc.load_model(model).predict(rows)``;
(b) over HTTP: ``mlflow models serve -m model --env-manager local`` on 127.0.0.1, one JSON
    ``dataframe_split`` POST per request (bodies built beforehand, answers parsed);

for one row per request (p50, p95 over --requests) and a 1,000-row batch (over --batches), the
two paths taking turns request by request, and prints b/a. Targets: HTTP one-row p50 <= 1.5x
the in-process one; in process, one row p50 <= 10 ms and 1,000 rows p50 <= 40 ms, with the
model's test AUC (printed when the model is trained here) >= 0.953. The same is measured with
the forest's training ``n_jobs`` (--other-n-jobs, default ``model.n_jobs``) to show what
``predict_n_jobs`` buys.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.local_server import serve  # noqa: E402
from serving.serving_example import to_payload  # noqa: E402

TARGET_RATIO = 1.5
TARGET_ONE_ROW_MS = 10.0
TARGET_BATCH_MS = 40.0


def build_model(data: Path, out: Path) -> tuple[str, pd.DataFrame, str]:
    """Train and export the configured pipeline; return its folder, test rows and a label."""
    from omegaconf import OmegaConf

    from evaluate.scoring import score_model
    from preprocess.cleaning import preprocess
    from segregate.split import split_data
    from train_random_forest.export import export_model
    from train_random_forest.model_config import read_model_config
    from train_random_forest.pipeline import build_pipeline, split_train_val, train_and_validate
    from util_lib.step.contract import default_contract

    config = OmegaConf.load(REPO / "config.yaml")
    model_config = read_model_config("config.yaml")
    seed, split = config.main.random_seed, config.data
    target = default_contract().target  # data.stratify: ${dataset.target}
    train, test = split_data(preprocess(pd.read_parquet(data)), split.test_size, seed, target)
    X_train, X_val, y_train, y_val = split_train_val(train, target, split.val_size, seed, target)
    pipe, used = build_pipeline(model_config)
    pipe, val_auc = train_and_validate(pipe, used, X_train, y_train, X_val, y_val)
    folder = export_model(pipe, X_val, out / "model", model_config.get("predict_n_jobs"))
    forest = model_config["model"]
    test_auc = score_model(pipe, test, target=target)["auc"]
    label = (
        f"trained here with config.yaml: {forest['n_estimators']} trees, max_depth "
        f"{forest['max_depth']}, val_auc {val_auc:.4f}, test_auc {test_auc:.4f}"
    )
    return str(folder), test, label


def test_rows(data: Path) -> pd.DataFrame:
    """The test split of the configured pipeline (for a model given with --model)."""
    from omegaconf import OmegaConf

    from preprocess.cleaning import preprocess
    from segregate.split import split_data
    from util_lib.step.contract import default_contract

    config = OmegaConf.load(REPO / "config.yaml")
    split, target = config.data, default_contract().target  # data.stratify: the target
    _, test = split_data(
        preprocess(pd.read_parquet(data)), split.test_size, config.main.random_seed, target
    )
    return test


def interleaved(
    calls: dict[str, Callable[[int], object]], n: int, warmup: int = 10
) -> dict[str, np.ndarray]:
    """Seconds of each ``calls[k](i)`` for i in range(n), the paths taking turns per request.

    Taking turns puts both paths under the same load (other processes, CPU frequency), so
    their ratio holds on a busy machine too.
    """
    for i in range(warmup):
        for call in calls.values():
            call(i % n)
    seconds = {key: np.empty(n) for key in calls}
    for i in range(n):
        for key, call in calls.items():
            start = time.perf_counter()
            call(i)
            seconds[key][i] = time.perf_counter() - start
    return seconds


def measure(
    model_uri: str, rows: pd.DataFrame, n_requests: int, n_batches: int, batch: int,
    n_jobs: int | None, log: Path,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One-row and batch timings of both paths for ``model_uri`` with pyfunc ``n_jobs``."""
    import mlflow.pyfunc
    import requests

    config = {"n_jobs": n_jobs} if n_jobs is not None else None
    model = mlflow.pyfunc.load_model(model_uri, model_config=config)
    columns = list(model.metadata.get_input_schema().input_names())
    singles = [rows.iloc[[i % len(rows)]][columns] for i in range(n_requests)]
    big = rows.iloc[:batch][columns]
    single_bodies = [to_payload(frame) for frame in singles]
    big_body = to_payload(big)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if config:
        # How a server is given a pyfunc model_config (the flavor's "config" section).
        env["MLFLOW_PYFUNC_INFERENCE_CONFIG"] = json.dumps(config)
    headers = {"Content-Type": "application/json"}
    with serve(model_uri, log, cwd=log.parent, env=env) as url, requests.Session() as http:

        def post(body: str) -> None:
            answer = http.post(url, data=body, headers=headers, timeout=120)
            answer.raise_for_status()
            answer.json()

        one = interleaved(
            {
                "in-process one": lambda i: model.predict(singles[i]),
                "HTTP one": lambda i: post(single_bodies[i]),
            },
            n_requests,
        )
        many = interleaved(
            {
                "in-process batch": lambda i: model.predict(big),
                "HTTP batch": lambda i: post(big_body),
            },
            n_batches,
            warmup=2,
        )
    return {**one, **many}


def report(
    label: str, result: dict[str, np.ndarray], n_requests: int, n_batches: int
) -> tuple[float, float, float]:
    """Print one block of the table; return the HTTP / in-process one-row p50 ratio and the
    in-process one-row and batch p50s (ms)."""

    def ms(key: str, q: float) -> float:
        return float(np.percentile(result[key], q) * 1000)

    print(f"\n{label}")
    print(f"{'':24}{'one row (' + str(n_requests) + ' requests)':>28}"
          f"{'1000-row batch (' + str(n_batches) + ')':>30}")  # fmt: skip
    print(f"{'path':<24}{'p50 ms':>14}{'p95 ms':>14}{'p50 ms':>15}{'p95 ms':>15}")
    for path in ("in-process", "HTTP"):
        print(
            f"{path + (' predict' if path == 'in-process' else ' /invocations'):<24}"
            f"{ms(path + ' one', 50):>14.2f}{ms(path + ' one', 95):>14.2f}"
            f"{ms(path + ' batch', 50):>15.1f}{ms(path + ' batch', 95):>15.1f}"
        )
    ratios = [
        ms("HTTP one", 50) / ms("in-process one", 50),
        ms("HTTP one", 95) / ms("in-process one", 95),
        ms("HTTP batch", 50) / ms("in-process batch", 50),
        ms("HTTP batch", 95) / ms("in-process batch", 95),
    ]
    print(
        f"{'HTTP / in-process':<24}{ratios[0]:>13.2f}x{ratios[1]:>13.2f}x"
        f"{ratios[2]:>14.2f}x{ratios[3]:>14.2f}x"
    )
    return ratios[0], ms("in-process one", 50), ms("in-process batch", 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "dataset" / "genres_mod.parquet")
    parser.add_argument("--model", help="model folder or models:/ URI (default: train one)")
    parser.add_argument("--requests", type=int, default=300, help="one-row requests (>= 200)")
    parser.add_argument("--batches", type=int, default=20, help="1000-row requests")
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument(
        "--other-n-jobs",
        type=int,
        help="also measure with this pyfunc n_jobs (default: the model's n_jobs, model.n_jobs)",
    )
    args = parser.parse_args()
    if args.requests < 200:
        parser.error("--requests must be at least 200 for a p95")
    other = args.other_n_jobs
    if other is None:
        from train_random_forest.model_config import read_model_config

        other = read_model_config("config.yaml")["model"]["n_jobs"]
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp_dir = Path(tmp)
        if args.model:
            model_uri, rows, label = args.model, test_rows(args.data.resolve()), args.model
        else:
            model_uri, rows, label = build_model(args.data.resolve(), tmp_dir)
        from mlflow.models import Model

        flavor = Model.load(model_uri).flavors["python_function"]
        exported = (flavor.get("config") or {}).get("n_jobs")
        print(f"cores: {os.cpu_count()}  model: {label}")
        print(f"pyfunc loader: {flavor['loader_module']}; exported n_jobs: {exported}")

        # (n_jobs override or None for the exported one, label)
        runs: list[tuple[int | None, str]] = [(None, f"n_jobs={exported}, as exported")]
        if other is not None and other != exported:
            runs.append(
                (other, f"n_jobs={other}, the training one, by MLFLOW_PYFUNC_INFERENCE_CONFIG")
            )
        results = []
        for override, what in runs:
            result = measure(
                model_uri, rows, args.requests, args.batches, args.batch_rows, override,
                tmp_dir / f"serve-{override}.log",
            )  # fmt: skip
            results.append(report(what, result, args.requests, args.batches))
    ratio, one_ms, batch_ms = results[0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("\nTargets, model as exported:")
    print(
        f"  HTTP one-row p50 <= {TARGET_RATIO}x in process: {ratio:.2f}x, "
        f"{verdict(ratio <= TARGET_RATIO)}"
    )
    print(
        f"  in process, one row p50 <= {TARGET_ONE_ROW_MS:.0f} ms: {one_ms:.2f} ms, "
        f"{verdict(one_ms <= TARGET_ONE_ROW_MS)}"
    )
    print(
        f"  in process, {args.batch_rows} rows p50 <= {TARGET_BATCH_MS:.0f} ms: {batch_ms:.1f} ms, "
        f"{verdict(batch_ms <= TARGET_BATCH_MS)}"
    )


if __name__ == "__main__":
    main()
