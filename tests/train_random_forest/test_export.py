"""The exported model: skops with an explicit trusted list, loadable with the repo out of reach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.pipeline import Pipeline

from train_random_forest.export import export_model
from train_random_forest.pipeline import build_pipeline
from util_lib.model.pyfunc import is_trusted

# Run in a fresh interpreter whose working directory is a copy of the model's parent:
# util_lib must come from the model's own code/ folder.
LOAD_AND_PREDICT = """
import json, sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
import util_lib.model.transformers
rows = pd.read_parquet(sys.argv[2])
print(json.dumps({
    "transformers_file": util_lib.model.transformers.__file__,
    "predictions": [str(p) for p in model.predict(rows)],
}))
"""


@pytest.fixture
def fitted(model_config: dict[str, Any], sample: pd.DataFrame) -> tuple[Pipeline, pd.DataFrame]:
    pipe, columns = build_pipeline(model_config)
    X = sample.drop(columns="genre")
    pipe.fit(X[columns], sample["genre"])
    return pipe, X


@pytest.fixture
def exported(fitted: tuple[Pipeline, pd.DataFrame], tmp_path: Path) -> Path:
    pipe, X = fitted
    return export_model(pipe, X, tmp_path / "model_export")


def _inference_rows(X: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Ten rows as a client sends them: loudness and text partly missing."""
    rows = X[columns].iloc[:10].reset_index(drop=True)
    rows["loudness"] = rows["loudness"].where(rows.index % 2 == 0)  # NaN on odd rows
    text = rows["title"].astype(object)
    text[[1, 4]] = None
    rows["title"] = text
    return rows


def test_mlmodel_says_skops_and_lists_the_trusted_types(exported: Path) -> None:
    mlmodel = yaml.safe_load((exported / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["sklearn"]
    assert flavor["serialization_format"] == "skops"
    assert flavor["skops_trusted_types"] == [
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "util_lib.model.transformers.ModeImputer",
        "util_lib.model.transformers.join_text",
    ]
    assert flavor["code"] == "code"
    assert (exported / "code" / "util_lib" / "model" / "transformers.py").is_file()
    assert (exported / "model.skops").is_file()


def test_every_type_the_pipeline_needs_is_trusted_by_rule(
    fitted: tuple[Pipeline, pd.DataFrame],
) -> None:
    pipe, _ = fitted
    needed = skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
    assert needed and all(is_trusted(name) for name in needed)


def test_signature_names_the_used_columns(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    pipe, _ = fitted
    signature = yaml.safe_load((exported / "MLmodel").read_text())["signature"]
    inputs = {c["name"]: c for c in json.loads(signature["inputs"])}
    assert list(inputs) == list(pipe.feature_names_in_)
    assert inputs["loudness"]["type"] == "double" and not inputs["loudness"]["required"]
    assert inputs["key"]["type"] == "long"
    # Raw rows: the text columns as the dataset holds them, no text_feature (the model joins
    # them itself).
    assert inputs["title"]["type"] == inputs["song_name"]["type"] == "string"
    assert "text_feature" not in inputs
    # input_example.json is a request body (mlflow models predict -i input_example.json);
    # MLflow's loader reads the split-orient copy that MLmodel names.
    request = json.loads((exported / "input_example.json").read_text())["dataframe_split"]
    assert request["columns"] == list(pipe.feature_names_in_) and len(request["data"]) == 5
    info = yaml.safe_load((exported / "MLmodel").read_text())["saved_input_example_info"]
    example = json.loads((exported / info["artifact_path"]).read_text())
    assert example == request


@pytest.mark.integration
def test_loads_and_predicts_without_the_repository(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, X = fitted
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(exported, elsewhere / "model")
    rows = _inference_rows(X, list(pipe.feature_names_in_))
    rows.to_parquet(elsewhere / "rows.parquet", index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, "model", "rows.parquet"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(loaded["transformers_file"]).is_relative_to(elsewhere / "model" / "code")
    assert loaded["predictions"] == [str(p) for p in pipe.predict(rows)]


def test_sklearn_flavor_loads_the_same_pipeline(
    exported: Path, fitted: tuple[Pipeline, pd.DataFrame]
) -> None:
    import mlflow.sklearn

    pipe, X = fitted
    loaded = mlflow.sklearn.load_model(str(exported))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))


def test_export_refuses_a_folder_in_use(
    fitted: tuple[Pipeline, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, X = fitted
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    with pytest.raises(Exception, match="already exists"):
        export_model(pipe, X, tmp_path / "taken")
