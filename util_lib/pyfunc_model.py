"""The python_function flavor of the exported model: genres, or genre probabilities on request.

The exported model keeps MLflow's ``sklearn`` flavor (``mlflow.sklearn.load_model`` gives the
fitted pipeline) and gets this module as the loader of its ``python_function`` flavor, which is
what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` / ``predict`` and the Docker image use.
It travels with the model (``code/util_lib``), so it imports wherever the model loads.

What it adds to the plain sklearn pyfunc:

- the ``predict_method`` parameter: ``"predict"`` (default) returns the genres, as before;
  ``"predict_proba"`` returns one column per genre holding its probability. Over REST::

      {"dataframe_split": {...}, "params": {"predict_method": "predict_proba"}}

- the ``n_jobs`` of the pipeline's estimators at prediction time, from the flavor's
  ``model_config`` (written at export from ``random_forest_pipeline.predict_n_jobs``;
  ``mlflow.pyfunc.load_model(uri, model_config={"n_jobs": -1})`` overrides it): one request of a
  few rows is fastest on one thread, where joblib's start-up costs more than the trees;
- answers instead of stack traces: an empty batch gets an empty answer, a column the signature
  marks optional (it had missing values in training) may be left out and is imputed, and input
  the pipeline refuses gets a 400 naming the problem.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LOADER_MODULE = "util_lib.pyfunc_model"
PREDICT_METHODS = ("predict", "predict_proba")
DEFAULT_PARAMS = {"predict_method": "predict"}


class GenreClassifier:
    """A fitted scikit-learn classifier behind the pyfunc ``predict(data, params)`` interface.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted inference pipeline (preprocessing and classifier).
    n_jobs : int, optional
        Sets every ``n_jobs`` parameter of the pipeline; ``None`` leaves them as trained.
    """

    def __init__(self, pipeline: Any, n_jobs: int | None = None) -> None:
        if n_jobs is not None:
            names = [k for k in pipeline.get_params(deep=True) if k.split("__")[-1] == "n_jobs"]
            pipeline.set_params(**dict.fromkeys(names, int(n_jobs)))
        self.pipeline = pipeline

    def get_raw_model(self) -> Any:
        """Return the scikit-learn pipeline."""
        return self.pipeline

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predict the genre of each row, or each genre's probability.

        Parameters
        ----------
        data : pandas.DataFrame
            Rows with the model's columns (MLflow has checked them against the signature).
        params : dict, optional
            ``{"predict_method": "predict" | "predict_proba"}``; default ``"predict"``.

        Returns
        -------
        numpy.ndarray of shape (n_rows,) or pandas.DataFrame of shape (n_rows, n_genres)
            The genres, or (``predict_proba``) one column per genre, named after it.

        Raises
        ------
        mlflow.exceptions.MlflowException
            With error code ``INVALID_PARAMETER_VALUE`` (HTTP 400) for an unknown
            ``predict_method`` or data the pipeline cannot use, naming the problem.
        """
        method = (params or {}).get("predict_method") or DEFAULT_PARAMS["predict_method"]
        if method not in PREDICT_METHODS:
            raise _bad_request(
                f"params.predict_method must be one of {list(PREDICT_METHODS)}, got {method!r}"
            )
        absent = [c for c in getattr(self.pipeline, "feature_names_in_", ()) if c not in data]
        if absent:
            # The signature lets a client leave out the columns that had missing values in
            # training (its optional ones): they are missing everywhere, and get imputed.
            data = data.assign(**dict.fromkeys(absent, np.nan))
        classes = [str(c) for c in self.pipeline.classes_]
        if len(data) == 0:
            if method == "predict":
                return np.array([], dtype=object)
            return pd.DataFrame(columns=classes, dtype=float)
        try:
            if method == "predict":
                return self.pipeline.predict(data)
            return pd.DataFrame(
                self.pipeline.predict_proba(data), columns=classes, index=data.index
            )
        except (ValueError, TypeError) as exc:
            # The signature lets through what it cannot describe (e.g. a list in a text
            # column); without this the server answers with its own stack trace.
            raise _bad_request(f"the model cannot use this input: {exc}") from exc


def _bad_request(message: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> GenreClassifier:
    """Load the model folder ``path`` (called by ``mlflow.pyfunc.load_model``).

    The sklearn flavor of the same folder holds the pipeline and the skops types to trust.
    """
    import mlflow.sklearn

    n_jobs = (model_config or {}).get("n_jobs")
    return GenreClassifier(mlflow.sklearn.load_model(path), n_jobs=n_jobs)


def add_pyfunc_flavor(model_dir: str, n_jobs: int | None) -> None:
    """Make this module the ``python_function`` loader of an exported sklearn model folder.

    Keeps everything ``mlflow.sklearn.save_model`` wrote (code, environment, data path) and
    replaces only the loader module, adding ``model_config={"n_jobs": n_jobs}`` when given.

    Parameters
    ----------
    model_dir : str
        Folder written by ``mlflow.sklearn.save_model`` with ``code_paths`` holding util_lib.
    n_jobs : int, optional
        Threads of each prediction; ``None`` keeps the trained pipeline's setting.
    """
    from pathlib import Path

    import mlflow.pyfunc
    from mlflow.models import Model

    mlmodel_path = Path(model_dir) / "MLmodel"
    mlmodel = Model.load(str(mlmodel_path))
    flavor = mlmodel.flavors[mlflow.pyfunc.FLAVOR_NAME]
    if not flavor.get("code"):
        raise ValueError(f"{model_dir}: the model bundles no code, so {LOADER_MODULE} cannot load")
    env = flavor.get("env") or {}
    # Rebuilt with the same code, environment and data; only the loader (and config) change.
    mlflow.pyfunc.add_to_model(
        mlmodel,
        loader_module=LOADER_MODULE,
        code=flavor["code"],
        conda_env=env.get("conda"),
        python_env=env.get("virtualenv"),
        model_config={"n_jobs": int(n_jobs)} if n_jobs is not None else None,
        model_path=flavor["model_path"],
    )
    mlmodel.save(str(mlmodel_path))
