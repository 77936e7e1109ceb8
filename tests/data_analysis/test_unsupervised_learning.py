"""data_analysis/UnsupervisedLearning.ipynb: what its clustering run tracked, recomputed.

The notebook runs in the session's store with the other notebooks (conftest.py: `executed`);
these tests read its run back: the data version it used, the scores per k, the cluster
assignments it logged (from which its ARI and purity are recomputed), its figures and its
printed conclusions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from sklearn.metrics import adjusted_rand_score

from tests.data_analysis.notebook_runs import (
    REPO,
    artifact_paths,
    download,
    stdout,
    tracked_run,
)
from tests.pipeline_runs import PROJECT, sqlite_uri
from util_lib.artifacts.mlflow_store import MlflowArtifactStore

# The session's store and notebooks (conftest.py) are made once for the files of this group.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("data_analysis")]

NOTEBOOK = "UnsupervisedLearning.ipynb"
METHODS = ("kmeans", "gmm", "agglomerative")
FIGURES = (
    "kmeans_elbow_silhouette",
    "gmm_bic",
    "agglomerative_dendrogram",
    "tsne_map",
    "genre_cluster_contingency",
)


@pytest.fixture(scope="module")
def clustering(store: Path, executed):
    """The clustering notebook's run."""
    return tracked_run(store, "clustering")


@pytest.fixture(scope="module")
def data_train(store: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The training split in the store (data_train:v0), read with the project's store."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sqlite_uri(store))
        artifacts = MlflowArtifactStore(project=PROJECT)
        path = artifacts.download(artifacts.resolve("data_train:v0"), tmp_path_factory.mktemp("d"))
        return pd.read_parquet(path)


@pytest.fixture(scope="module")
def assignments(store: Path, clustering, tmp_path_factory: pytest.TempPathFactory):
    """The sample rows with their clusters, as the run logged them."""
    path = download(
        store, clustering.info.run_id, "cluster_assignments.csv", tmp_path_factory.mktemp("a")
    )
    return pd.read_csv(path)


def _per_k(metrics: dict[str, float], prefix: str) -> dict[int, float]:
    """``{k: value}`` of the metrics named ``<prefix><k>``."""
    return {
        int(name.removeprefix(prefix)): value
        for name, value in metrics.items()
        if name.startswith(prefix) and name.removeprefix(prefix).isdigit()
    }


def test_clustering_run_reads_the_training_split(store: Path, clustering, data_train) -> None:
    assert clustering.info.status == "FINISHED"
    assert clustering.data.tags["util_lib.job_type"] == "clustering"
    assert clustering.data.tags["util_lib.artifacts_used"] == "data_train:v0"
    metrics, params = clustering.data.metrics, clustering.data.params
    assert metrics["rows"] == len(data_train)
    assert metrics["genres"] == data_train["genre"].nunique()
    # Its settings come from config.yaml and the data contract, not from the notebook.
    from util_lib.step.contract import default_contract

    config = OmegaConf.load(REPO / "config.yaml")
    assert int(params["random_seed"]) == config.main.random_seed
    assert yaml.safe_load(params["features"]) == default_contract().features()["numerical"]


def test_kmeans_and_mixture_scores_per_k_are_consistent(clustering) -> None:
    metrics, params = clustering.data.metrics, clustering.data.params
    low, high = yaml.safe_load(params["k_range"])
    tried = set(range(low, high + 1)) | {int(metrics["genres"])}
    silhouette = _per_k(metrics, "silhouette_k")
    inertia = _per_k(metrics, "inertia_k")
    ari = _per_k(metrics, "ari_kmeans_k")
    bic = _per_k(metrics, "bic_n")
    for curve in (silhouette, inertia, ari, bic):
        assert set(curve) == tried
    assert all(-1 <= value <= 1 for value in [*silhouette.values(), *ari.values()])
    assert all(value > 0 for value in inertia.values())
    # The summary values are the extremes of the curves logged beside them.
    assert metrics["best_k_silhouette"] == max(silhouette, key=silhouette.get)
    assert metrics["best_k_ari"] == max(ari, key=ari.get)
    assert metrics["best_n_components_bic"] == min(bic, key=bic.get)
    assert metrics["elbow_k"] in tried
    # The comparison with the genres uses k = the number of genres.
    assert metrics["ari_kmeans"] == pytest.approx(ari[int(metrics["genres"])])


def test_cluster_assignments_reproduce_the_logged_scores(
    clustering, assignments: pd.DataFrame, data_train: pd.DataFrame
) -> None:
    metrics, params = clustering.data.metrics, clustering.data.params
    assert len(assignments) == metrics["sample_rows"] == int(params["sample_size"])
    # The sample is drawn with the configured seed from the training split's rows.
    rng = np.random.default_rng(int(params["random_seed"]))
    expected = np.sort(rng.choice(len(data_train), size=len(assignments), replace=False))
    assert assignments["row"].tolist() == expected.tolist()
    assert assignments["genre"].tolist() == data_train["genre"].iloc[expected].tolist()
    genres = assignments["genre"]
    for method in METHODS:
        assert assignments[method].nunique() == metrics["genres"]
        ari = adjusted_rand_score(genres, assignments[method])
        assert metrics[f"ari_{method}"] == pytest.approx(ari, abs=1e-9)
        assert -1 <= ari <= 1
        # The features hold genre structure: every method beats the shuffled genres.
        assert ari > metrics["ari_chance"]
        counts = pd.crosstab(assignments[method], genres)
        purity = counts.max(axis=1).sum() / len(assignments)
        assert metrics[f"purity_{method}"] == pytest.approx(purity)
        assert purity > metrics["purity_baseline"]
    assert metrics["purity_baseline"] == pytest.approx(genres.value_counts(normalize=True).max())
    assert assignments[["tsne_1", "tsne_2"]].notna().all().all()


def test_clustering_figures_are_logged(store: Path, clustering) -> None:
    figures = artifact_paths(store, clustering.info.run_id, "figures")
    assert {f"figures/{name}.png" for name in FIGURES} <= set(figures)


def test_clustering_conclusions_are_printed_from_the_logged_numbers(
    store: Path, clustering, executed, tmp_path: Path
) -> None:
    metrics = clustering.data.metrics
    logged = download(store, clustering.info.run_id, "conclusions.txt", tmp_path).read_text()
    printed = stdout(executed[NOTEBOOK].cells)
    assert logged.strip() and logged in printed
    best_k, genres = int(metrics["best_k_silhouette"]), int(metrics["genres"])
    assert f"highest at k={best_k} ({metrics[f'silhouette_k{best_k}']:.3f})" in logged
    assert f"lowest with {int(metrics['best_n_components_bic'])} components" in logged
    best = max(METHODS, key=lambda method: metrics[f"ari_{method}"])
    assert f"With {genres} clusters" in logged
    assert f"ARI {metrics[f'ari_{best}']:.3f}" in logged
    assert f"{metrics[f'purity_{best}']:.1%}" in logged
    assert math.isfinite(metrics["runtime_s"]) and metrics["runtime_s"] > 0
