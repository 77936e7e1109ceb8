"""Export of the fitted inference pipeline as an MLflow model (sklearn flavor, skops format)."""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import version
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Types in the fitted pipeline that skops does not trust by default, found with
# `skops.io.get_untrusted_types(data=skops.io.dumps(pipe))` on the pipeline that
# build_pipeline() makes (scikit-learn 1.9.1, skops 0.16.0). Listing them explicitly (rather
# than trusting whatever the file holds) keeps loading safe: a model file naming any other
# type is refused. Extend it only when the pipeline gains a type, after checking the new type.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "util_lib.transformers.ModeImputer",
    "util_lib.transformers.fill_missing_text",
]

# util_lib travels inside the model (under code/) so that util_lib.transformers imports
# wherever the model is loaded, with this repository nowhere on sys.path.
UTIL_LIB_DIR = Path(__file__).resolve().parent.parent / "util_lib"

# What loading and predicting needs, pinned to the versions that trained the model. Given
# explicitly, MLflow need not load the model in a subprocess to guess them (which also picks up
# whatever the process had imported, e.g. pytest).
_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")

_N_EXAMPLE_ROWS = 5


def export_model(
    pipe: Pipeline, X_example: pd.DataFrame, path: Path, predict_n_jobs: int | None = None
) -> Path:
    """Save a fitted pipeline as an MLflow model folder.

    The model is serialized with skops, trusting only :data:`SKOPS_TRUSTED_TYPES`; its
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
        ``None`` keeps the trained value. The pyfunc flavor is :mod:`util_lib.pyfunc_model`,
        which also offers genre probabilities (``params={"predict_method": "predict_proba"}``).

    Returns
    -------
    pathlib.Path
        ``path``, now holding ``MLmodel``, ``model.skops``, ``code/util_lib`` and more.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from util_lib import pyfunc_model

    X = X_example[list(pipe.feature_names_in_)]
    with warnings.catch_warnings():
        # MLflow hints that integer columns (key, time_signature, duration_ms) cannot carry
        # missing values. Kept on purpose: clients send them as integers, and typing them as
        # doubles would make MLflow refuse int64 input.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(
            X, pd.Series(pipe.predict(X)), params=pyfunc_model.DEFAULT_PARAMS
        )
    mlflow.sklearn.save_model(
        pipe,
        str(path),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=signature,
        input_example=X.iloc[:_N_EXAMPLE_ROWS],
        code_paths=[str(UTIL_LIB_DIR)],
        pip_requirements=[f"{name}=={version(name)}" for name in _REQUIREMENTS],
    )
    pyfunc_model.add_pyfunc_flavor(str(path), predict_n_jobs)
    logger.info("model exported to %s", path)
    return Path(path)
