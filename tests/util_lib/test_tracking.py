"""util_lib.tracking: the experiment a run lands in, and figures."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
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


def test_run_in_a_named_experiment_creates_it_beside_the_store(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from util_lib.tracking import open_run

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "named_by_env")
    run = open_run("step", "test")
    run.close()
    experiment = MlflowClient().get_experiment(
        MlflowClient().get_run(run.run_id).info.experiment_id
    )
    assert experiment.name == "named_by_env"
    assert experiment.artifact_location == str(tracking / "mlruns" / "named_by_env")


def test_two_processes_starting_together_share_a_new_named_experiment(
    run_together: Callable[..., list[str]],
) -> None:
    from mlflow import MlflowClient

    from util_lib.store import MlflowArtifactStore

    # Both wait for the same moment to open a run in an experiment that does not exist yet:
    # both find it missing and both create it, and one of them must cope.
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from mlflow import MlflowClient
        from util_lib.tracking import open_run
        MlflowClient().search_experiments()  # the store is open: only the lookup is left
        go = Path(sys.argv[1])
        while not go.exists():
            time.sleep(0.001)
        run = open_run("together", "test")
        run.close()
        print(run.run_id)
        """
    )
    MlflowArtifactStore().names()  # the database exists; the experiment does not
    run_ids = set(run_together(script, [[], []], {"MLFLOW_EXPERIMENT_NAME": "started_together"}))
    client = MlflowClient()
    experiments = [e for e in client.search_experiments() if e.name == "started_together"]
    assert len(experiments) == 1
    assert {client.get_run(r).info.experiment_id for r in run_ids} == {experiments[0].experiment_id}
    assert len(run_ids) == 2


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


def test_the_offline_wandb_run_keeps_the_step_s_console_output(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import uuid

    from mlflow import MlflowClient

    from util_lib.tracking import open_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    printed, logged = f"printed {uuid.uuid4().hex}", f"logged {uuid.uuid4().hex}"
    run = open_run("talking", "test")
    print(printed)
    logging.getLogger("talking").info(logged)  # util_lib's handler writes it to stderr
    run.close()

    wandb_dir = Path(MlflowClient().get_run(run.run_id).data.tags["wandb.dir"])
    output = (wandb_dir / "files" / "output.log").read_text()
    assert printed in output
    assert f"[talking] talking: {logged}" in output
