"""The exported model's pyfunc flavor: genres by default, probabilities on request, n_jobs,
and the input domain from the data contract."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from preprocess.cleaning import preprocess
from train_random_forest.export import export_model
from train_random_forest.model_config import read_model_config
from train_random_forest.pipeline import build_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fitted(dataset_path: Path) -> tuple[Pipeline, pd.DataFrame]:
    """A small forest fitted on 600 real songs (n_jobs=-1 as configured), and 50 other songs."""
    model_config: dict[str, Any] = read_model_config("config.yaml")
    model_config["model"].update(n_estimators=10, n_jobs=-1)
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
    assert pyfunc["loader_module"] == "util_lib.model.pyfunc"
    assert pyfunc["config"] == {"n_jobs": 1}
    assert pyfunc["model_path"] == "model.skops" and pyfunc["code"] == "code"
    assert (exported / "code" / "util_lib" / "model" / "pyfunc.py").is_file()
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
    # The numerical column with missing values, and the text columns (a song may lack either
    # its title or its name; the model joins what it gets).
    assert optional == ["loudness", "title", "song_name"]
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


# ----------------------------------------------------------------------------- input domain


@pytest.fixture(scope="module")
def served(exported: Path):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(exported))


def _refused(model, rows: pd.DataFrame, params: dict | None = None) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        model.predict(rows, params=params)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"  # HTTP 400
    return info.value.message


def test_the_export_writes_the_domain_from_the_data_contract(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    from util_lib.step.contract import default_contract
    from util_lib.step.data_schema import data_schema, value_ranges

    pipe, _ = fitted
    domain = json.loads((exported / "input_domain.json").read_text())
    model_columns = set(pipe.feature_names_in_)
    assert domain["ranges"] == {
        c: list(bounds)
        for c, bounds in value_ranges(data_schema(default_contract())).items()
        if c in model_columns
    }
    assert domain["source"].endswith("conf/dataset/genres.yaml")
    assert domain["ranges"]["danceability"] == [0.0, 1.0]
    assert "mode" not in domain["ranges"]  # not a feature of the model
    encoder = pipe["processor"].named_transformers_["categorical"][-1]
    assert domain["categories"] == {
        "time_signature": encoder.categories_[0].tolist(),
        "key": encoder.categories_[1].tolist(),
    }
    assert domain["categories"]["time_signature"] == [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("column", "value", "bound"),
    [
        ("danceability", -50.0, "outside [0.0, 1.0]"),
        ("key", 99, "outside [-1, 11]"),
        ("time_signature", 7, "not one the model was trained on [1, 3, 4, 5]"),
        ("duration_ms", 250, "outside [1000, 7200000]"),
        ("tempo", 1e9, "outside [0.0, 300.0]"),
    ],
)
def test_a_value_outside_the_domain_is_refused_naming_column_value_and_bound(
    served, fitted: tuple[Pipeline, pd.DataFrame], column: str, value: float, bound: str
) -> None:
    _, rows = fitted
    bad = rows.iloc[:4].copy()
    bad.loc[2, column] = value
    expected = f"column '{column}': value {value!r} (row 2) is {bound}"
    for params in (None, {"predict_method": "predict_proba"}):
        message = _refused(served, bad, params)
        assert message == f"input outside the model's domain: {expected}"


def test_every_column_outside_the_domain_is_named_once(served, fitted) -> None:
    _, rows = fitted
    bad = rows.iloc[:6].copy()
    bad.loc[[1, 3, 4, 5], "danceability"] = [-50.0, 2.0, 3.0, 4.0]
    bad.loc[0, ["key", "time_signature"]] = [99, 7]
    message = _refused(served, bad)
    assert "column 'danceability': value -50.0 (row 1; 4 rows in all, e.g. rows [1, 3, 4])" in (
        message
    )
    assert "column 'key': value 99 (row 0)" in message
    assert "column 'time_signature': value 7 (row 0)" in message
    assert message.count("column '") == 3


def test_the_bounds_themselves_and_missing_values_are_allowed(
    served, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    pipe, rows = fitted
    edge = rows.iloc[:6].copy()
    edge.loc[0, ["danceability", "energy"]] = [0.0, 1.0]
    edge.loc[1, ["loudness", "tempo", "valence"]] = np.nan  # imputed by the pipeline
    edge.loc[2, "loudness"] = -60.0
    edge["title"] = edge["title"].astype(object)
    edge.loc[3, ["title", "song_name"]] = None
    np.testing.assert_array_equal(served.predict(edge), pipe.predict(edge))


def test_text_in_a_numerical_column_is_a_bad_request(fitted) -> None:
    from util_lib.model.pyfunc import Classifier, InputDomain

    pipe, rows = fitted
    model = Classifier(pipe, domain=InputDomain({"tempo": (0.0, 300.0)}))
    bad = rows.iloc[:2].astype({"tempo": object})
    bad.loc[0, "tempo"] = "fast"
    message = _refused(model, bad)
    assert message.startswith("the model cannot use this input") and "fast" in message


@pytest.fixture
def without_domain(exported: Path, tmp_path: Path) -> Path:
    """A copy of the exported model as exported before the input domain existed."""
    old = tmp_path / "old_model"
    shutil.copytree(exported, old)
    (old / "input_domain.json").unlink()
    return old


def test_a_model_exported_before_the_domain_loads_and_predicts_unchecked(
    without_domain: Path, fitted: tuple[Pipeline, pd.DataFrame], caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow.pyfunc

    pipe, rows = fitted
    with caplog.at_level(logging.WARNING, logger="util_lib.model.pyfunc"):
        model = mlflow.pyfunc.load_model(str(without_domain))
    assert "has no input_domain.json" in caplog.text
    assert "not checked" in caplog.text
    bad = rows.iloc[:3].assign(danceability=-50.0)
    np.testing.assert_array_equal(model.predict(bad), pipe.predict(bad))


def test_a_malformed_domain_file_fails_loading_naming_it(without_domain: Path) -> None:
    import mlflow.pyfunc

    (without_domain / "input_domain.json").write_text('{"ranges": {"tempo": [0.0]}}')
    with pytest.raises(ValueError, match="input_domain.json: not a valid input domain"):
        mlflow.pyfunc.load_model(str(without_domain))


@pytest.mark.integration
def test_loading_and_predicting_do_not_import_pandera(
    exported: Path, fitted, tmp_path: Path
) -> None:
    # As served: from outside the repository, util_lib only from the model's own code/.
    _, rows = fitted
    rows.iloc[:3].assign(danceability=-50.0).to_parquet(tmp_path / "rows.parquet")
    script = (
        "import sys, mlflow.pyfunc, pandas as pd\n"
        "from mlflow.exceptions import MlflowException\n"
        f"model = mlflow.pyfunc.load_model({str(exported)!r})\n"
        "rows = pd.read_parquet('rows.parquet')\n"
        "try:\n"
        "    model.predict(rows)\n"
        "except MlflowException as exc:\n"
        "    print(exc.message)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pandera', 'util_lib'}))\n"
        "print(sys.modules['util_lib'].__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    refused, modules, util_lib_file = done.stdout.strip().splitlines()[-3:]
    assert refused.startswith("input outside the model's domain: column 'danceability'")
    assert "pandera" not in modules and "util_lib.model.pyfunc" in modules
    assert util_lib_file.startswith(str(exported / "code"))


# ------------------------------------------------------------------- what the model carries


def test_the_model_bundles_only_the_code_loading_needs(exported: Path) -> None:
    code = exported / "code" / "util_lib"
    bundled = sorted(p.relative_to(code).as_posix() for p in code.rglob("*.py"))
    assert bundled == [
        "__init__.py",
        "model/__init__.py",
        "model/input_domain.py",
        "model/pyfunc.py",
        "model/safe_load.py",
        "model/transformers.py",
    ]


@pytest.fixture
def hostile(exported: Path, tmp_path: Path) -> Path:
    """A copy of the export whose model file asks skops for ``posix.system`` and whose MLmodel
    lists that type as trusted: what someone with write access to the folder could make."""
    import os as os_module

    import skops.io
    from mlflow.models import Model

    folder = tmp_path / "hostile"
    shutil.copytree(exported, folder)
    flavor = Model.load(str(folder / "MLmodel")).flavors["sklearn"]
    (folder / flavor["pickled_model"]).write_bytes(skops.io.dumps(os_module.system))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"].append("posix.system")
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return folder


def test_the_skops_allow_list_comes_from_the_code_not_the_model_folder(hostile: Path) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn
    from skops.io.exceptions import UntrustedTypesFoundException

    from util_lib.model.pyfunc import is_trusted, load_pipeline

    # MLflow's own loader trusts the folder's list: the hostile file loads.
    assert mlflow.sklearn.load_model(str(hostile)) is os.system
    assert not is_trusted("posix.system")
    with pytest.raises(UntrustedTypesFoundException, match="posix.system"):
        load_pipeline(hostile)
    with pytest.raises(UntrustedTypesFoundException, match="posix.system"):
        mlflow.pyfunc.load_model(str(hostile))


def test_a_pickled_model_is_refused(exported: Path, tmp_path: Path) -> None:
    from util_lib.model.pyfunc import load_pipeline

    folder = tmp_path / "pickled"
    shutil.copytree(exported, folder)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["serialization_format"] = "cloudpickle"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    with pytest.raises(ValueError, match="not a skops file"):
        load_pipeline(folder)
