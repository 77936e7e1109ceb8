"""The inference pipeline (preprocessing + the configured classifier): build it, split the data,
fit it."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder, StandardScaler

from util_lib.model.transformers import ModeImputer, join_text
from util_lib.step.contract import Contract
from util_lib.step.metrics import score_auc

logger = logging.getLogger(__name__)

FEATURE_GROUPS = ("numerical", "categorical", "nlp")
NLP_PREFIX = "nlp_"
# The text feature's name when the settings give none (the data contract's text_feature).
DEFAULT_TEXT_FEATURE = "text_feature"
_EXAMPLE_TARGET = "sklearn.ensemble.RandomForestClassifier"


def build_pipeline(model_config: dict[str, Any]) -> tuple[Pipeline, list[str]]:
    """Build the unfitted inference pipeline and list the columns it reads.

    Numerical columns get a median imputation and standard scaling, categorical columns a
    mode imputation and an ordinal encoding (categories unseen in training become -1), and
    the text ("nlp") columns are joined into one text (:func:`util_lib.model.transformers.
    join_text`) that gets a binary TF-IDF; a group without columns is left out (e.g. no text).
    Other columns are dropped.

    Parameters
    ----------
    model_config : dict
        The ``random_forest_pipeline`` section of the configuration, ``tfidf``
        (``max_features``) and ``features`` (lists ``numerical``, ``categorical`` and ``nlp``
        of column names), with the model under ``model`` (``_target_`` and its keyword
        arguments, see :func:`build_classifier`).

    Returns
    -------
    pipe : sklearn.pipeline.Pipeline
        Steps ``processor`` (a ColumnTransformer) and ``classifier``.
    used_columns : list of str
        Every configured column, in the order numerical, categorical, nlp.

    Raises
    ------
    KeyError
        When a section or a feature group is missing from ``model_config``.
    ValueError
        When a column is configured twice, or the model's ``_target_`` is not a class.
    """
    for section in ("model", "tfidf", "features"):
        if section not in model_config:
            raise KeyError(f"model config has no {section!r} section")
    features = model_config["features"]
    for group in FEATURE_GROUPS:
        if group not in features:
            raise KeyError(f"model config has no features.{group} list")
    used_columns = [column for group in FEATURE_GROUPS for column in features[group]]
    repeated = sorted({c for c in used_columns if used_columns.count(c) > 1})
    if repeated:
        raise ValueError(f"columns configured more than once in features: {repeated}")

    transformers: list[tuple[str, Any, Any]] = []
    # A group without columns gets no transformer (a table may have no categorical column):
    # an unfitted one would stay in the fitted pipeline.
    if features["numerical"]:
        transformers.append(
            (
                "numerical",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                list(features["numerical"]),
            )
        )
    if features["categorical"]:
        transformers.append(
            (
                "categorical",
                make_pipeline(
                    ModeImputer(),
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ),
                list(features["categorical"]),
            )
        )
    max_terms = model_config["tfidf"]["max_features"]
    if features["nlp"]:
        # The text columns joined into one text per row (missing parts as ""), inside the
        # model: it takes rows as the dataset holds them, and builds its text feature itself.
        name = model_config.get("text_feature") or DEFAULT_TEXT_FEATURE
        transformers.append(
            (
                f"{NLP_PREFIX}{name}",
                make_pipeline(
                    FunctionTransformer(join_text),
                    TfidfVectorizer(binary=True, max_features=max_terms),
                ),
                list(features["nlp"]),
            )
        )
    processor = ColumnTransformer(transformers=transformers, remainder="drop")
    pipe = Pipeline(
        steps=[
            ("processor", processor),
            ("classifier", build_classifier(model_config["model"])),
        ]
    )
    return pipe, used_columns


def build_classifier(spec: dict[str, Any]) -> BaseEstimator:
    """Build the estimator that ``spec`` describes, as ``hydra.utils.instantiate`` would.

    (The step's environment has no Hydra: a class and its keyword arguments need none.)

    Parameters
    ----------
    spec : dict
        ``_target_``, the class's dotted path (e.g.
        ``"sklearn.ensemble.RandomForestClassifier"``), and its keyword arguments.

    Returns
    -------
    sklearn.base.BaseEstimator
        The unfitted estimator.

    Raises
    ------
    ValueError
        When ``_target_`` is missing or does not name a class, naming the value.
    """
    arguments = dict(spec)
    target = arguments.pop("_target_", None)
    module_name, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if not isinstance(cls, type):
        raise ValueError(f"model._target_={target!r}: not a class, e.g. {_EXAMPLE_TARGET}")
    return cls(**arguments)


def split_train_val(
    df: pd.DataFrame,
    target: str,
    val_size: float,
    random_state: int,
    stratify: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Split a table into training and validation features and targets.

    Parameters
    ----------
    df : pandas.DataFrame
        Features and target.
    target : str
        Name of the target column.
    val_size : float
        Fraction of the rows that go to validation, in (0, 1).
    random_state : int
        Seed of the shuffle.
    stratify : str, optional
        Column whose class proportions both parts keep; ``None`` for a plain random split.

    Returns
    -------
    X_train, X_val : pandas.DataFrame
        Features (every column but ``target``).
    y_train, y_val : pandas.Series
        Target.

    Raises
    ------
    ValueError
        When ``target`` or ``stratify`` is not a column of ``df``.
    """
    _require_columns(df, [target] + ([stratify] if stratify else []))
    X = df.drop(columns=[target])
    y = df[target]
    X_train, X_val, y_train, y_val = train_test_split(
        X,
        y,
        test_size=val_size,
        random_state=random_state,
        stratify=df[stratify] if stratify else None,
    )
    return X_train, X_val, y_train, y_val


def train_and_validate(
    pipe: Pipeline,
    used_columns: list[str],
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_val: pd.DataFrame,
    y_val: pd.Series,
    contract: Contract | None = None,
) -> tuple[Pipeline, float]:
    """Fit the pipeline on the training part and score it on the validation part.

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Unfitted pipeline from :func:`build_pipeline`.
    used_columns : list of str
        The columns it reads.
    X_train, X_val : pandas.DataFrame
        Features.
    y_train, y_val : pandas.Series
        Target.
    contract : Contract, optional
        The data contract the inputs are checked against; None: the one config.yaml chooses.

    Returns
    -------
    pipe : sklearn.pipeline.Pipeline
        The same pipeline, fitted.
    val_auc : float
        Validation ROC AUC, macro average of the one-vs-one AUCs.

    Raises
    ------
    ValueError
        When a configured column is missing from ``X_train`` or ``X_val``;
        :class:`util_lib.step.data_schema.DataContractError` (a ValueError) when they break the data
        contract (e.g. a feature without a single value), naming the column, before fitting.
    """
    check_model_inputs(X_train, used_columns, "the training data", contract)
    check_model_inputs(X_val, used_columns, "the validation data", contract)
    logger.info("fitting on %d rows and %d columns", len(X_train), len(used_columns))
    start = time.perf_counter()
    pipe.fit(X_train[used_columns], y_train)
    logger.info("fitted in %.1f s", time.perf_counter() - start)
    val_auc = score_auc(pipe, X_val[used_columns], y_val)
    logger.info("validation AUC %.4f on %d rows", val_auc, len(X_val))
    return pipe, val_auc


GRID_SEARCH_KEYS = ("param_grid", "cv", "scoring")


def search_parameters(
    pipe: Pipeline,
    used_columns: list[str],
    X_train: pd.DataFrame,
    y_train: pd.Series,
    settings: dict[str, Any],
    contract: Contract | None = None,
) -> tuple[dict[str, Any], float, pd.DataFrame]:
    """Pick the pipeline's parameters by a cross-validated grid search on the training part.

    Only the search runs here (``GridSearchCV(refit=False)``): set the best parameters on the
    pipeline and fit it with :func:`train_and_validate`, so the exported model is the best one,
    fitted and validated like any other.

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Unfitted pipeline from :func:`build_pipeline`; it is not changed.
    used_columns : list of str
        The columns it reads.
    X_train : pandas.DataFrame
        Features.
    y_train : pandas.Series
        Target.
    settings : dict
        ``random_forest_pipeline.grid_search``: ``param_grid`` (``{pipeline parameter: list of
        values}``, e.g. ``{"classifier__max_depth": [10, 20]}``), ``cv`` (number of stratified
        folds) and ``scoring`` (a scikit-learn scorer name, e.g. ``roc_auc_ovo``).
    contract : Contract, optional
        The data contract ``X_train`` is checked against; None: the one config.yaml chooses.

    Returns
    -------
    best_params : dict
        The grid point with the best mean cross-validated score.
    best_score : float
        That score.
    results : pandas.DataFrame
        One row per grid point: its parameters, mean and std of the score, rank.

    Raises
    ------
    ValueError
        When a setting is missing or unknown, the grid is empty, or a parameter is not one of
        the pipeline's (the message lists what is valid); when ``X_train`` breaks the data
        contract (see :func:`check_model_inputs`).
    """
    from sklearn.model_selection import GridSearchCV

    missing = [k for k in GRID_SEARCH_KEYS if settings.get(k) is None]
    unknown = sorted(set(settings) - set(GRID_SEARCH_KEYS))
    if missing or unknown:
        raise ValueError(
            f"random_forest_pipeline.grid_search needs exactly {list(GRID_SEARCH_KEYS)}; "
            f"missing: {missing}, unknown: {unknown}"
        )
    param_grid = {k: list(v) for k, v in dict(settings["param_grid"]).items()}
    valid = pipe.get_params()
    wrong = sorted(k for k in param_grid if k not in valid)
    if wrong or not param_grid or not all(param_grid.values()):
        hint = sorted(k for k in valid if k.startswith("classifier__"))
        raise ValueError(
            f"random_forest_pipeline.grid_search.param_grid: unknown parameter(s) {wrong} or an "
            f"empty list; valid ones include {hint} and processor__... (pipe.get_params())"
        )
    check_model_inputs(X_train, used_columns, "the training data", contract)
    search = GridSearchCV(
        pipe, param_grid, cv=int(settings["cv"]), scoring=settings["scoring"], refit=False
    )
    start = time.perf_counter()
    search.fit(X_train[used_columns], y_train)
    logger.info(
        "grid search of %d points x %s folds in %.1f s: best %s, %s %.4f",
        len(search.cv_results_["params"]),
        settings["cv"],
        time.perf_counter() - start,
        search.best_params_,
        settings["scoring"],
        search.best_score_,
    )
    columns = [f"param_{k}" for k in param_grid] + [
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
    ]
    results = pd.DataFrame(search.cv_results_)[columns]
    return dict(search.best_params_), float(search.best_score_), results


def trained_categories(pipe: Pipeline) -> dict[str, list]:
    """Return, per categorical column, the categories the fitted encoder knows.

    A value outside them is encoded as "unknown" (-1), which the forest never saw in training;
    the served model refuses it (see :func:`util_lib.step.data_schema.serving_domain`).

    Parameters
    ----------
    pipe : sklearn.pipeline.Pipeline
        Fitted pipeline from :func:`build_pipeline`.

    Returns
    -------
    dict of str to list
        E.g. ``{"time_signature": [1, 3, 4, 5], "key": [0, 1, ..., 11]}``.
    """
    processor = pipe["processor"]
    for name, transformer, columns in processor.transformers_:
        if name == "categorical":
            encoder = transformer[-1]
            return {
                column: categories.tolist()
                for column, categories in zip(columns, encoder.categories_, strict=True)
            }
    return {}


def check_model_inputs(
    X: pd.DataFrame, used_columns: list[str], what: str, contract: Contract | None = None
) -> None:
    """Check the columns the model reads against the data contract, before anything is fitted.

    The contract's schema (:func:`util_lib.step.data_schema.data_schema`) is restricted to
    ``used_columns`` (dtypes, ranges, nullability, no column entirely missing). Without it an
    all-missing numerical feature is dropped by the imputer with a warning only, and the step
    fails later, far from the cause (``zip() argument 2 is shorter than argument 1`` while
    plotting the feature importances).

    Parameters
    ----------
    X : pandas.DataFrame
        Features.
    used_columns : list of str
        The columns the model reads.
    what : str
        What ``X`` is, for the message, e.g. ``"the training data"``.
    contract : Contract, optional
        The data contract; None: the one config.yaml chooses.

    Raises
    ------
    ValueError
        When a column is missing from ``X``.
    util_lib.step.data_schema.DataContractError
        A ValueError naming each column, the check it fails and example values.
    """
    # Imported here: building and fitting the pipeline need no pandera.
    from util_lib.step.contract import default_contract
    from util_lib.step.data_schema import data_schema, model_input_schema, validate

    _require_columns(X, used_columns)
    schema = data_schema(contract or default_contract())
    validate(X[used_columns], model_input_schema(schema, used_columns), what)


def _require_columns(df: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the data (it has {list(df.columns)})")
