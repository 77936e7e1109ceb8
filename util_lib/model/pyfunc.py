"""The python_function flavor of the exported model: genres, or genre probabilities on request.

The exported model keeps MLflow's ``sklearn`` flavor (``mlflow.sklearn.load_model`` gives the
fitted pipeline) and gets this module as the loader of its ``python_function`` flavor, which is
what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` / ``predict`` and the Docker image use.
It travels with the model (``code/util_lib/model/``, beside ``code/util_lib/__init__.py``), so
it imports wherever the model loads; it imports nothing of util_lib outside ``model/``.

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
  the pipeline refuses gets a 400 naming the problem;
- the input domain: a value outside the physical range of its column (``input_domain.json``,
  written at export from the data contract, :mod:`util_lib.step.data_schema`) or a category the
  model was not trained on gets a 400 naming column, value and bound. Missing values stay
  allowed (the pipeline imputes them). The check is numpy on plain data, so serving needs no
  pandera; a model exported without the file loads and predicts unchecked, with a warning;
- a safe load: the fitted pipeline is read with skops trusting only the types that
  :func:`is_trusted`'s rule in this code accepts (scikit-learn's own classes, the project's
  transformers, ``numpy.dtype``), never the list a model folder's ``MLmodel`` carries
  (``mlflow.sklearn.load_model`` trusts that one, so whoever edits the folder could make a
  hostile file load); a file asking for any other type, or a pickle, is refused.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from util_lib.model import transformers

logger = logging.getLogger(__name__)

LOADER_MODULE = "util_lib.model.pyfunc"
PREDICT_METHODS = ("predict", "predict_proba")
DEFAULT_PARAMS = {"predict_method": "predict"}
# Beside MLmodel in the model folder: {"ranges": {column: [low, high]},
# "categories": {column: [value, ...]}}.
DOMAIN_FILENAME = "input_domain.json"
_ROWS_NAMED = 3

# The types of a fitted pipeline that skops does not trust by default are trusted by rule, decided
# here from this code, never from the model folder: numpy's dtype, scikit-learn's own classes
# (module prefix sklearn., so that a new model family needs no edit) and what the project's
# transformer module defines. Anything else, and any scikit-learn function, is refused by name.
# (skops warns that some of them, e.g. sklearn.tree._tree.Tree, could crash a process if a
# file were forged: the artifact store checks a model's files against their digests.)
TRUSTED_TYPES = ("numpy.dtype",)
TRUSTED_PREFIX = "sklearn."
# The transformer module by its name in this code; models exported before util_lib.model
# existed name it util_lib.transformers (util_lib/__init__.py resolves that name).
OWN_MODULES = (transformers.__name__, "util_lib.transformers")


def is_trusted(name: str) -> bool:
    """Whether the safe loader trusts the type ``name`` (``module.attribute``, as skops'
    ``get_untrusted_types`` gives it); see :data:`TRUSTED_TYPES`.

    Parameters
    ----------
    name : str
        E.g. ``"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"``.

    Returns
    -------
    bool
        True for ``numpy.dtype``, a class that a ``sklearn.`` module defines, and a class or
        function that the project's transformer module defines; False for anything else.
    """
    if name in TRUSTED_TYPES:
        return True
    module, _, attribute = name.rpartition(".")
    if module in OWN_MODULES:
        return attribute in _own_names()
    if not module.startswith(TRUSTED_PREFIX):
        return False
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and found.__module__.startswith(TRUSTED_PREFIX)


def _own_names() -> set[str]:
    """The public classes and functions that the transformer module itself defines (not what
    it imports)."""
    return {
        name
        for name, value in vars(transformers).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == transformers.__name__
    }


def trusted_types(found: Sequence[str]) -> list[str]:
    """The types to hand skops: ``found`` (what a file holds that skops does not trust by
    default), each trusted by :func:`is_trusted`.

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        Naming every type of ``found`` that the rule does not trust.
    """
    from skops.io.exceptions import UntrustedTypesFoundException

    refused = [name for name in found if not is_trusted(name)]
    if refused:
        raise UntrustedTypesFoundException(refused)
    return list(found)


def load_pipeline(model_dir: str | Path) -> Any:
    """Load the fitted scikit-learn pipeline of an exported model folder, safely.

    Parameters
    ----------
    model_dir : str or pathlib.Path
        A folder written by the export (``MLmodel`` with an ``sklearn`` flavor in skops format).

    Returns
    -------
    sklearn.pipeline.Pipeline
        The fitted pipeline.

    Raises
    ------
    ValueError
        When the folder's model is not a skops file inside the folder (a pickle would run
        whatever code it holds).
    skops.io.exceptions.UntrustedTypesFoundException
        When the file holds a type that :func:`is_trusted` refuses, naming it.
    """
    import skops.io
    from mlflow.models import Model

    folder = Path(model_dir).resolve()
    flavor = Model.load(str(folder / "MLmodel")).flavors.get("sklearn") or {}
    if flavor.get("serialization_format") != "skops":
        raise ValueError(
            f"{folder}: the model is not a skops file (serialization_format="
            f"{flavor.get('serialization_format')!r}); refusing to unpickle it"
        )
    path = (folder / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_file() or not path.is_relative_to(folder):
        raise ValueError(f"{folder}: the model file {flavor.get('pickled_model')!r} is not in it")
    # What the file holds, checked by the rule before anything of it is built.
    return skops.io.load(path, trusted=trusted_types(skops.io.get_untrusted_types(file=path)))


class InputDomain:
    """The values a served model accepts: inclusive ranges and known categories per column.

    Parameters
    ----------
    ranges : mapping of str to (float, float)
        Column -> (lowest, highest) allowed value.
    categories : mapping of str to sequence, optional
        Column -> the values the model was trained on.
    """

    def __init__(
        self,
        ranges: Mapping[str, Sequence[float]],
        categories: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.ranges = {column: (low, high) for column, (low, high) in ranges.items()}
        self.categories = {c: list(values) for c, values in (categories or {}).items()}
        # Precomputed once, so that a request costs a few array operations on one block of its
        # values (pandas' access to a column costs ~10 us, more than comparing a whole batch).
        # Categories are numeric codes (key, time_signature).
        self._columns = pd.Index(
            list(self.ranges) + [c for c in self.categories if c not in ranges]
        )
        bounds = [self.ranges.get(c, (-np.inf, np.inf)) for c in self._columns]
        self._lows = np.array([float(low) for low, _ in bounds])
        self._highs = np.array([float(high) for _, high in bounds])
        self._known = {c: np.asarray(values, dtype=float) for c, values in self.categories.items()}
        self._layouts: dict[tuple, tuple] = {}  # per request columns: see _layout

    def _layout(self, columns: pd.Index) -> tuple:
        """Where the domain's columns are in a request with ``columns``, and their bounds.

        Cached: the requests to a server all have the same columns, and looking them up costs
        more than the whole check of a row.
        """
        key = tuple(columns)
        layout = self._layouts.get(key)
        if layout is None:
            positions = columns.get_indexer(self._columns)  # -1: column absent
            present = positions >= 0
            names = list(self._columns[present])
            coded = [(j, c) for j, c in enumerate(names) if c in self._known]
            layout = (positions[present], names, self._lows[present], self._highs[present], coded)
            if len(self._layouts) < 16:
                self._layouts[key] = layout
        return layout

    @classmethod
    def read(cls, model_dir: str | Path) -> InputDomain | None:
        """Read :data:`DOMAIN_FILENAME` from a model folder; ``None`` when it has none."""
        path = Path(model_dir) / DOMAIN_FILENAME
        if not path.is_file():
            return None
        try:
            spec = json.loads(path.read_text())
            return cls(spec["ranges"], spec.get("categories"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid input domain ({exc!r})") from exc

    def violations(self, data: pd.DataFrame) -> list[str]:
        """Describe each column of ``data`` with values outside the domain (missing values and
        columns the domain does not know are not checked).

        Returns
        -------
        list of str
            One sentence per column naming the value, its row and the bound; empty when valid.
        """
        problems: dict[str, str] = {}  # one sentence per column, the first problem found
        take, columns, lows, highs, coded = self._layout(data.columns)
        # One object (or float) array of the request, then floats: None and NaN become NaN,
        # text raises ValueError.
        values = data.to_numpy()[:, take].astype(float)
        # NaN compares False on both sides: missing values pass (they are imputed).
        outside = (values < lows) | (values > highs)
        if outside.any():
            for j in np.flatnonzero(outside.any(axis=0)):
                low, high = self.ranges[columns[j]]
                problems[columns[j]] = _describe(
                    data, columns[j], outside[:, j], f"outside [{low}, {high}]"
                )
        for j, column in coded:
            if column in problems:
                continue
            # A handful of codes: one broadcast comparison beats np.isin's sorting.
            known = (values[:, j, None] == self._known[column]).any(axis=1)
            unknown = ~known & ~np.isnan(values[:, j])
            if unknown.any():
                bound = f"not one the model was trained on {self.categories[column]}"
                problems[column] = _describe(data, column, unknown, bound)
        return list(problems.values())


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _describe(data: pd.DataFrame, column: str, mask: np.ndarray, bound: str) -> str:
    rows = np.flatnonzero(mask)
    first = _plain(data[column].iloc[rows[0]])
    more = (
        f"; {len(rows)} rows in all, e.g. rows {rows[:_ROWS_NAMED].tolist()}"
        if len(rows) > 1
        else ""
    )
    return f"column {column!r}: value {first!r} (row {rows[0]}{more}) is {bound}"


class GenreClassifier:
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


def _load_pyfunc(path: str, model_config: dict[str, Any] | None = None) -> GenreClassifier:
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
    return GenreClassifier(load_pipeline(path), n_jobs=n_jobs, domain=domain)


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
