"""The exported model's pyfunc flavor: genres by default, probabilities on request, n_jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from preprocess.cleaning import preprocess
from train_random_forest.export import export_model
from train_random_forest.pipeline import build_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted(dataset_path: Path) -> tuple[Pipeline, pd.DataFrame]:
    """A small forest fitted on 600 real songs (n_jobs=-1 as configured), and 50 other songs."""
    config = OmegaConf.load(REPO / "config.yaml")
    model_config: dict[str, Any] = OmegaConf.to_container(
        config.random_forest_pipeline, resolve=True
    )
    model_config["random_forest"].update(n_estimators=10, n_jobs=-1)
    songs = preprocess(pd.read_parquet(dataset_path))
    train, rest = train_test_split(songs, train_size=600, stratify=songs["genre"], random_state=0)
    pipe, columns = build_pipeline(model_config)
    pipe.fit(train[columns], train["genre"])
    return pipe, rest.iloc[:50][columns].reset_index(drop=True)


@pytest.fixture(scope="module")
def exported(fitted: tuple[Pipeline, pd.DataFrame], tmp_path_factory) -> Path:
    pipe, rows = fitted
    return export_model(pipe, rows, tmp_path_factory.mktemp("m") / "model", predict_n_jobs=1)


def test_mlmodel_names_the_loader_its_config_and_the_params(exported: Path) -> None:
    mlmodel = yaml.safe_load((exported / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "util_lib.pyfunc_model"
    assert pyfunc["config"] == {"n_jobs": 1}
    assert pyfunc["model_path"] == "model.skops" and pyfunc["code"] == "code"
    assert (exported / "code" / "util_lib" / "pyfunc_model.py").is_file()
    assert '"predict_method"' in mlmodel["signature"]["params"]
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"


def test_predict_gives_the_pipelines_genres(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    import mlflow.pyfunc

    pipe, rows = fitted
    model = mlflow.pyfunc.load_model(str(exported))
    np.testing.assert_array_equal(model.predict(rows), pipe.predict(rows))
    explicit = model.predict(rows, params={"predict_method": "predict"})
    np.testing.assert_array_equal(explicit, pipe.predict(rows))


def test_predict_proba_gives_one_named_column_per_genre(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    import mlflow.pyfunc

    pipe, rows = fitted
    model = mlflow.pyfunc.load_model(str(exported))
    proba = model.predict(rows, params={"predict_method": "predict_proba"})
    assert isinstance(proba, pd.DataFrame)
    assert list(proba.columns) == [str(c) for c in pipe.classes_]
    np.testing.assert_allclose(proba.to_numpy(), pipe.predict_proba(rows))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_unknown_predict_method_is_refused_naming_the_choices(exported: Path, fitted) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    _, rows = fitted
    model = mlflow.pyfunc.load_model(str(exported))
    with pytest.raises(MlflowException, match="'predict', 'predict_proba'.*'decision'") as info:
        model.predict(rows, params={"predict_method": "decision"})
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_empty_batch_gets_an_empty_answer(exported: Path, fitted) -> None:
    import mlflow.pyfunc

    _, rows = fitted
    model = mlflow.pyfunc.load_model(str(exported))
    assert len(model.predict(rows.iloc[:0])) == 0
    proba = model.predict(rows.iloc[:0], params={"predict_method": "predict_proba"})
    assert proba.shape[0] == 0 and proba.shape[1] > 1


def test_an_optional_column_left_out_is_imputed(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    import mlflow.pyfunc

    pipe, rows = fitted
    signature = mlflow.pyfunc.load_model(str(exported)).metadata.get_input_schema()
    optional = [c.name for c in signature.inputs if not c.required]
    assert optional == ["loudness"]  # the one numerical column with missing values
    model = mlflow.pyfunc.load_model(str(exported))
    answer = model.predict(rows.drop(columns="loudness"))
    np.testing.assert_array_equal(answer, pipe.predict(rows.assign(loudness=np.nan)))


def test_n_jobs_from_the_flavor_config_and_its_override(exported: Path) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    served = mlflow.pyfunc.load_model(str(exported)).get_raw_model()
    assert served.get_params()["classifier__n_jobs"] == 1
    assert served.get_params()["processor__n_jobs"] == 1
    wider = mlflow.pyfunc.load_model(str(exported), model_config={"n_jobs": 2}).get_raw_model()
    assert wider.get_params()["classifier__n_jobs"] == 2
    # The sklearn flavor gives the pipeline as trained.
    assert mlflow.sklearn.load_model(str(exported)).get_params()["classifier__n_jobs"] == -1
