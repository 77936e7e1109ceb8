"""The secret of the pipeline's tracking server in a real pipeline (`mlflow run`, W&B offline):
it reaches every step, and nothing the pipeline prints or writes holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline_runs import SMALL_FOREST, STEPS, mlflow_run

pytestmark = pytest.mark.e2e

# On the pipeline's PYTHONPATH: every Python process that starts with the token in its
# environment (each step's process, which mlflow.run starts) appends it to a file outside the
# run's folder, so the test knows the secret it must not find anywhere.
OBSERVER = """
import os

token = os.environ.get("MLFLOW_TRACKING_TOKEN")
if token:
    with open(os.environ["TOKEN_SEEN_FILE"], "a") as seen:
        seen.write(token + "\\n")
"""


def test_the_token_reaches_the_steps_and_nothing_the_pipeline_writes(tmp_path: Path) -> None:
    observer = tmp_path / "observer"
    observer.mkdir()
    (observer / "sitecustomize.py").write_text(OBSERVER)
    seen = tmp_path / "tokens-seen"
    workdir = tmp_path / "run"
    run = mlflow_run(
        workdir,
        SMALL_FOREST,
        wandb_mode="offline",
        PYTHONPATH=str(observer),
        TOKEN_SEEN_FILE=str(seen),
    ).check()
    assert seen.exists(), "no step process had MLFLOW_TRACKING_TOKEN: the pipeline served none"
    lines = seen.read_text().split()
    assert len(lines) >= len(STEPS), lines  # every step's process got it
    assert len(set(lines)) == 1  # one pipeline, one secret
    token = lines[0]
    # What a user or another program reads afterwards: the log, Hydra's outputs, W&B's
    # files, the store (its SQLite file holds every parameter and tag) and its artifacts.
    log = workdir / "ml_pipeline.log"
    assert "tracking server http://127.0.0.1:" in log.read_text()
    assert any((workdir / "wandb").rglob("*.wandb"))
    assert (workdir / "mlflow.db").stat().st_size > 0
    holders = [
        str(path.relative_to(workdir))
        for path in workdir.rglob("*")
        if path.is_file() and token.encode() in path.read_bytes()
    ]
    assert holders == []
    assert token not in run.stdout + run.stderr
