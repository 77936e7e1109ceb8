#!/usr/bin/env python
"""Score songs with a served genre model: rows from a CSV or Parquet file, sent over REST.

    mlflow models serve -m "models:/music_genre_classification@prod" --env-manager local &
    python serving/serving_example.py                                # the model's input example
    python serving/serving_example.py --input songs.parquet --batch-size 500
    python serving/serving_example.py --input songs.csv --proba      # with the genre's probability

Rows go to ``--url`` as ``{"dataframe_split": {"columns": [...], "data": [...]}}`` in batches of
``--batch-size``, missing values (NaN, None) as JSON ``null``. Prints one line per row, its
number and predicted genre; exits with code 1 and the server's message when it answers 4xx/5xx
(its cause; ``--verbose`` prints it whole).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import requests

DEFAULT_URL = "http://127.0.0.1:5000/invocations"
# The repository's config.yaml names the registered model (main.registered_model_name).
CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


class ServerError(RuntimeError):
    """The server refused a batch (4xx/5xx) or could not be reached."""

    def __init__(self, summary: str, message: str = "") -> None:
        super().__init__(summary)
        self.message = message


def headline(message: str) -> str:
    """The cause in a scoring server's message, without the copies of the data it quotes.

    MLflow's answers read "Failed to predict data '<the rows>'. Error: ... Error: <cause>";
    the last "Error:" part names the column or value at fault.
    """
    return message.rsplit("Error: ", 1)[-1].strip() if "Error: " in message else message


def default_model_uri(config_path: Path = CONFIG) -> str | None:
    """``models:/<main.registered_model_name>@prod`` from the repository's config, if any."""
    if not config_path.is_file():
        return None
    from omegaconf import OmegaConf

    name = OmegaConf.select(OmegaConf.load(config_path), "main.registered_model_name")
    return f"models:/{name}@prod" if name else None


def read_rows(path: Path) -> pd.DataFrame:
    """Read a CSV (``.csv``) or Parquet (``.parquet``, ``.pq``) file into a DataFrame.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When its suffix is neither.
    """
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"input file {path}: expected a .csv or .parquet file, got {suffix!r}")


def input_example(model_uri: str) -> pd.DataFrame:
    """The input example stored with the model at ``model_uri`` (a folder or ``models:/...``).

    Raises
    ------
    ValueError
        When the model has no input example.
    """
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow.artifacts
    from mlflow.models import Model

    model = Model.load(model_uri)
    info = model.saved_input_example_info
    if not info:
        raise ValueError(f"the model {model_uri} has no input example: pass --input")
    with tempfile.TemporaryDirectory() as tmp_dir:
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model_uri.rstrip('/')}/{info['artifact_path']}", dst_path=tmp_dir
        )
        return model.load_input_example(tmp_dir)


def to_payload(rows: pd.DataFrame, params: dict[str, Any] | None = None) -> str:
    """The JSON body for ``rows``: ``dataframe_split`` with missing values as ``null``."""
    cells = rows.astype(object).where(rows.notna(), None).to_numpy().tolist()
    body: dict[str, Any] = {"dataframe_split": {"columns": list(rows.columns), "data": cells}}
    if params:
        body["params"] = params
    return json.dumps(body, allow_nan=False, default=_plain)


def _plain(value: Any) -> Any:
    # numpy scalars and timestamps that survive astype(object)
    return value.item() if hasattr(value, "item") else str(value)


def batches(rows: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Consecutive slices of ``rows`` of at most ``batch_size`` rows."""
    for start in range(0, len(rows), batch_size):
        yield rows.iloc[start : start + batch_size]


def post_batch(
    session: requests.Session, url: str, rows: pd.DataFrame, proba: bool, timeout: float
) -> list[Any]:
    """Send one batch; return the server's predictions.

    Raises
    ------
    ServerError
        With the server's status and message on a 4xx/5xx answer, or when it cannot be reached.
    """
    params = {"predict_method": "predict_proba"} if proba else None
    try:
        answer = session.post(
            url,
            data=to_payload(rows, params),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise ServerError(f"cannot reach {url}: {exc}") from exc
    if answer.status_code >= 400:
        try:
            message = answer.json().get("message", answer.text)
        except ValueError:
            message = answer.text
        raise ServerError(f"{url} answered {answer.status_code}: {message}", message)
    return answer.json()["predictions"]


def score(
    rows: pd.DataFrame, url: str, batch_size: int, proba: bool = False, timeout: float = 60.0
) -> list[str]:
    """Score ``rows`` batch by batch; return one output line per row.

    Each line is the row's number and genre (with ``proba``: and that genre's probability).
    """
    lines: list[str] = []
    with requests.Session() as session:
        for batch in batches(rows, batch_size):
            for prediction in post_batch(session, url, batch, proba, timeout):
                number = len(lines)
                if proba:
                    genre = max(prediction, key=prediction.get)
                    lines.append(f"{number}\t{genre}\t{prediction[genre]:.3f}")
                else:
                    lines.append(f"{number}\t{prediction}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="CSV or Parquet file of songs")
    parser.add_argument(
        "--model",
        default=default_model_uri(),
        help="model whose input example is sent when --input is not given "
        "(default: models:/<main.registered_model_name of config.yaml>@prod)",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"scoring URL (default {DEFAULT_URL})")
    parser.add_argument("--batch-size", type=int, default=100, help="rows per request")
    parser.add_argument(
        "--proba", action="store_true", help="also print the predicted genre's probability"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the server's whole error message"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.input is None and not args.model:
        parser.error("give --input FILE, or --model URI to send the model's input example")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the client; return the exit code."""
    args = parse_args(argv)
    try:
        rows = read_rows(args.input) if args.input else input_example(args.model)
        lines = score(rows, args.url, args.batch_size, args.proba, args.timeout)
    except ServerError as exc:
        summary = str(exc)
        if exc.message and not args.verbose:
            summary = summary.replace(exc.message, headline(exc.message))
        print(f"error: {summary}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. MLflow cannot find the model: name it, no traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    n_batches = math.ceil(len(rows) / args.batch_size)
    print(f"{len(lines)} rows scored in {n_batches} request(s) to {args.url}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
