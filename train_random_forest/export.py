"""Export of the fitted inference pipeline as an MLflow model (sklearn flavor, skops format)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from util_lib.step.contract import Contract

logger = logging.getLogger(__name__)

# What of util_lib travels inside the model (code/util_lib/): the package's __init__.py and its
# model/ room, which is what loading and predicting need (the transformers skops refers to by
# their module path, util_lib.model.transformers, and the pyfunc wrapper with its input domain
# and safe loader: the whole folder, so a module added to it travels too) and imports nothing
# else of util_lib; not the tracking, store or sweep code. The model then loads wherever it
# goes, with this repository nowhere on sys.path.
UTIL_LIB_DIR = Path(__file__).resolve().parent.parent / "util_lib"
MODEL_CODE = ("__init__.py", "model")

# What loading and predicting needs, pinned to the versions that trained the model. Given
# explicitly, MLflow need not load the model in a subprocess to guess them (which also picks up
# whatever the process had imported, e.g. pytest).
_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")

_N_EXAMPLE_ROWS = 5

# The input example in the split orient that MLflow's own loader reads
# (``Model.load_input_example``); MLmodel's ``saved_input_example_info`` points at it.
# ``input_example.json`` itself becomes a request body (see _make_example_a_request).
SPLIT_EXAMPLE_FILENAME = "input_example_split.json"


def export_model(
    pipe: Pipeline,
    X_example: pd.DataFrame,
    path: Path,
    predict_n_jobs: int | None = None,
    contract: Contract | None = None,
) -> Path:
    """Save a fitted pipeline as an MLflow model folder.

    The model is serialized with skops, trusting only the types that
    :func:`util_lib.model.pyfunc.is_trusted` accepts (the export fails naming any other); its
    signature names the columns the pipeline was fitted on (with their types) and the
    predicted class, and the first rows of ``X_example`` are stored as input example.

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        The pipeline, fitted on a DataFrame.
    X_example : pandas.DataFrame
        Rows the pipeline can predict (e.g. the validation features); may hold extra columns.
    path : pathlib.Path
        Folder to create; it must not exist or be empty.
    predict_n_jobs : int, optional
        ``n_jobs`` of the pipeline when loaded as a pyfunc (served, ``mlflow models predict``);
        ``None`` keeps the trained value. The pyfunc flavor is :mod:`util_lib.model.pyfunc`,
        which also offers class probabilities (``params={"predict_method": "predict_proba"}``).
    contract : Contract, optional
        The data contract, whose ranges the served model checks requests against; None: the
        one config.yaml chooses.

    Returns
    -------
    pathlib.Path
        ``path``, now holding ``MLmodel``, ``model.skops``, ``code/util_lib``,
        ``input_example.json`` (a request: ``mlflow models predict -i input_example.json``)
        and more.
    """
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    from train_random_forest.pipeline import trained_categories
    from util_lib.model import pyfunc
    from util_lib.step.contract import default_contract
    from util_lib.step.data_schema import data_schema, serving_domain

    X = X_example[list(pipe.feature_names_in_)]
    with warnings.catch_warnings():
        # MLflow hints that integer columns (key, time_signature, duration_ms) cannot carry
        # missing values. Kept on purpose: clients send them as integers, and typing them as
        # doubles would make MLflow refuse int64 input.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(X, pd.Series(pipe.predict(X)), params=pyfunc.DEFAULT_PARAMS)
    with tempfile.TemporaryDirectory(prefix="model-code-") as code:
        package = Path(code) / UTIL_LIB_DIR.name
        package.mkdir()
        for name in MODEL_CODE:
            if (UTIL_LIB_DIR / name).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(UTIL_LIB_DIR / name, package / name, ignore=ignore)
            else:
                shutil.copyfile(UTIL_LIB_DIR / name, package / name)
        mlflow.sklearn.save_model(
            pipe,
            str(path),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            # Recorded in MLmodel by MLflow; the model's own loader trusts its code's rule only.
            skops_trusted_types=pyfunc.trusted_types(
                skops.io.get_untrusted_types(data=skops.io.dumps(pipe))
            ),
            signature=signature,
            input_example=X.iloc[:_N_EXAMPLE_ROWS],
            code_paths=[str(package)],
            pip_requirements=[f"{name}=={version(name)}" for name in _REQUIREMENTS],
        )
    # The served model checks requests against the data contract's ranges (and the categories
    # it was trained on), written as plain JSON: serving needs no pandera.
    schema = data_schema(contract or default_contract())
    domain = serving_domain(schema, pipe.feature_names_in_, trained_categories(pipe))
    pyfunc.add_pyfunc_flavor(str(path), predict_n_jobs, domain)
    _make_example_a_request(Path(path))
    logger.info("model exported to %s", path)
    return Path(path)


def _make_example_a_request(path: Path) -> None:
    """Make ``input_example.json`` a body that ``mlflow models predict -t json`` accepts.

    MLflow 3 writes the example as ``{"columns": ..., "data": ...}``, which its scoring
    protocol (since 2.0) refuses: a JSON request must be ``{"dataframe_split": ...}`` (or
    another named format). The seed scored the example with
    ``mlflow models predict -t json -i model_export/input_example.json``, so that file becomes
    the request (a copy of MLflow's ``serving_input_example.json``) and the split-orient file
    moves to :data:`SPLIT_EXAMPLE_FILENAME`, where MLmodel sends MLflow's loader. One file
    cannot serve both: the loader refuses any key but columns/data/index, the scoring server
    any top level but one named format.
    """
    from mlflow.models import Model

    mlmodel = Model.load(str(path / "MLmodel"))
    info = mlmodel.saved_input_example_info
    example = path / info["artifact_path"]
    example.rename(path / SPLIT_EXAMPLE_FILENAME)
    shutil.copyfile(path / info["serving_input_path"], example)
    info["artifact_path"] = SPLIT_EXAMPLE_FILENAME
    mlmodel.save(str(path / "MLmodel"))
