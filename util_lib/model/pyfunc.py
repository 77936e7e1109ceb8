"""The python_function flavor of the exported model: labels, or class probabilities on request.

The exported model keeps MLflow's ``sklearn`` flavor (``mlflow.sklearn.load_model`` gives the
fitted pipeline) and gets this module as the loader of its ``python_function`` flavor, which is
what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` / ``predict`` and the Docker image use.
It travels with the model (``code/util_lib/model/``, beside ``code/util_lib/__init__.py``), so
it imports wherever the model loads; it imports nothing of util_lib outside ``model/``.

What it adds to the plain sklearn pyfunc:

- the ``predict_method`` parameter: ``"predict"`` (default) returns the labels, as before;
  ``"predict_proba"`` returns one column per class holding its probability. Over REST::

      {"dataframe_split": {...}, "params": {"predict_method": "predict_proba"}}

- the ``n_jobs`` of the pipeline's estimators at prediction time, from the flavor's
  ``model_config`` (written at export from ``random_forest_pipeline.predict_n_jobs``;
  ``mlflow.pyfunc.load_model(uri, model_config={"n_jobs": -1})`` overrides it): one request of a
  few rows is fastest on one thread, where joblib's start-up costs more than the trees;
- answers instead of stack traces: an empty batch gets an empty answer, a column the signature
  marks optional (it had missing values in training) may be left out and is imputed, and input
  the pipeline refuses gets a 400 naming the problem;
- the input domain (:mod:`util_lib.model.input_domain`): a value outside the physical range
  of its column (``input_domain.json``, written at export from the data contract,
  :mod:`util_lib.step.data_schema`) or a category the model was not trained on gets a 400
  naming column, value and bound. Missing values stay allowed (the pipeline imputes them). The
  check is numpy on plain data, so serving needs no pandera; a model exported without the file
  loads and predicts unchecked, with a warning;
- a safe load (:mod:`util_lib.model.safe_load`): the fitted pipeline is read with skops
  trusting only the types that :func:`is_trusted`'s rule in this code accepts (scikit-learn's
  own classes, the project's transformers, ``numpy.dtype``), never the list a model folder's
  ``MLmodel`` carries (``mlflow.sklearn.load_model`` trusts that one, so whoever edits the
  folder could make a hostile file load); a file asking for any other type, or a pickle, is
  refused.

Those two live in modules of their own, bundled with the model as this one is; their names
stay importable from here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# The input domain and the safe loader live in their own modules of model/ (bundled with the
# model as this one is); their names stay importable from here, where the export, evaluate,
# serving and the tests have always found them.
from util_lib.model.input_domain import DOMAIN_FILENAME, InputDomain
from util_lib.model.safe_load import (
    OWN_MODULES,
    TRUSTED_PREFIX,
    TRUSTED_TYPES,
    is_trusted,
    load_pipeline,
    trusted_types,
)

__all__ = [
    "DEFAULT_PARAMS",
    "DOMAIN_FILENAME",
    "LOADER_MODULE",
    "OWN_MODULES",
    "PREDICT_METHODS",
    "TRUSTED_PREFIX",
    "TRUSTED_TYPES",
    "Classifier",
    "InputDomain",
    "add_pyfunc_flavor",
    "is_trusted",
    "load_pipeline",
    "trusted_types",
]

logger = logging.getLogger(__name__)

LOADER_MODULE = "util_lib.model.pyfunc"
PREDICT_METHODS = ("predict", "predict_proba")
DEFAULT_PARAMS = {"predict_method": "predict"}


class Classifier:
    """A fitted scikit-learn classifier behind the pyfunc ``predict(data, params)`` interface.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted inference pipeline (preprocessing and classifier).
    n_jobs : int, optional
        Sets every ``n_jobs`` parameter of the pipeline; ``None`` leaves them as trained.
    domain : InputDomain, optional
        The values accepted; ``None``: no domain check.
    """

    def __init__(
        self, pipeline: Any, n_jobs: int | None = None, domain: InputDomain | None = None
    ) -> None:
        if n_jobs is not None:
            names = [k for k in pipeline.get_params(deep=True) if k.split("__")[-1] == "n_jobs"]
            pipeline.set_params(**dict.fromkeys(names, int(n_jobs)))
        self.pipeline = pipeline
        self.domain = domain

    def get_raw_model(self) -> Any:
        """Return the scikit-learn pipeline."""
        return self.pipeline

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """Predict the label of each row, or each class's probability.

        Parameters
        ----------
        data : pandas.DataFrame
            Rows with the model's columns (MLflow has checked them against the signature).
        params : dict, optional
            ``{"predict_method": "predict" | "predict_proba"}``; default ``"predict"``.

        Returns
        -------
        numpy.ndarray of shape (n_rows,) or pandas.DataFrame of shape (n_rows, n_classes)
            The labels, or (``predict_proba``) one column per class, named after it.

        Raises
        ------
        mlflow.exceptions.MlflowException
            With error code ``INVALID_PARAMETER_VALUE`` (HTTP 400) for an unknown
            ``predict_method``, a value outside the input domain (naming column, value and
            bound) or data the pipeline cannot use, naming the problem.
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
            problems = self.domain.violations(data) if self.domain is not None else []
        except (ValueError, TypeError) as exc:  # e.g. text in a numerical column
            raise _bad_request(f"the model cannot use this input: {exc}") from exc
        if problems:
            raise _bad_request("input outside the model's domain: " + "; ".join(problems))
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


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> Classifier:
    """Load the model folder ``path`` (called by ``mlflow.pyfunc.load_model``).

    The sklearn flavor of the same folder holds the pipeline (read by :func:`load_pipeline`,
    trusting this module's types only); :data:`DOMAIN_FILENAME` beside it, the input domain.
    """
    n_jobs = (model_config or {}).get("n_jobs")
    domain = InputDomain.read(path)
    if domain is None:
        logger.warning(
            "%s has no %s (exported before the input domain existed): inputs are not checked "
            "against the data contract's ranges",
            path,
            DOMAIN_FILENAME,
        )
    return Classifier(load_pipeline(path), n_jobs=n_jobs, domain=domain)


def add_pyfunc_flavor(
    model_dir: str, n_jobs: int | None, domain: Mapping[str, Any] | None = None
) -> None:
    """Make this module the ``python_function`` loader of an exported sklearn model folder.

    Keeps everything ``mlflow.sklearn.save_model`` wrote (code, environment, data path) and
    replaces only the loader module, adding ``model_config={"n_jobs": n_jobs}`` when given.

    Parameters
    ----------
    model_dir : str
        Folder written by ``mlflow.sklearn.save_model`` with ``code_paths`` holding util_lib.
    n_jobs : int, optional
        Threads of each prediction; ``None`` keeps the trained pipeline's setting.
    domain : mapping, optional
        The input domain (``{"ranges": ..., "categories": ...}``, e.g.
        :func:`util_lib.step.data_schema.serving_domain`), written to :data:`DOMAIN_FILENAME`;
        ``None``: the served model checks no domain.
    """
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
    if domain is not None:
        InputDomain(domain["ranges"], domain.get("categories"))  # refuse a malformed one now
        (Path(model_dir) / DOMAIN_FILENAME).write_text(json.dumps(dict(domain), indent=2) + "\n")
