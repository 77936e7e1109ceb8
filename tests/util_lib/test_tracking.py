"""util_lib.tracking's experiment helper: where a new experiment keeps its artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest

from util_lib.tracking import get_or_create_experiment


def test_new_experiment_keeps_its_artifacts_beside_the_sqlite_store(
    tracking: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    # The process runs elsewhere (the project folder, a remote run's clone).
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    experiment_id = get_or_create_experiment("music_genre_classification")
    experiment = MlflowClient().get_experiment(experiment_id)
    assert experiment.artifact_location == str(tracking / "mlruns" / "music_genre_classification")
    assert get_or_create_experiment("music_genre_classification") == experiment_id


def test_log_figure_renders_one_png_for_mlflow_and_offline_wandb(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    from util_lib.tracking import open_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    run = open_run("plotting", "test")
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    run.log_figure(figure, "line")
    run.close()

    assert not plt.fignum_exists(figure.number)  # closed once logged
    client = MlflowClient()
    logged = client.download_artifacts(run.run_id, "figures/line.png", str(tracking))
    assert Path(logged).read_bytes()[:4] == b"\x89PNG"
    wandb_dir = Path(client.get_run(run.run_id).data.tags["wandb.dir"])
    images = list((wandb_dir / "files" / "media" / "images").glob("line_*.png"))
    assert len(images) == 1
    assert images[0].read_bytes() == Path(logged).read_bytes()
