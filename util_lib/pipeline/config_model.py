"""The checks of the model: the config group ``model`` (its class and arguments by
scikit-learn's own rules, :mod:`~util_lib.pipeline.config_estimator`), keys that moved, and
config.yaml's ``random_forest_pipeline`` section (the grid search, the export's name).
Imported with :mod:`util_lib.pipeline.config`; scikit-learn is imported only when a check
needs it.
"""

from __future__ import annotations

from typing import Any

from util_lib.pipeline.config_checks import (
    ABSENT,
    Checker,
    check_name_key,
    is_int,
)
from util_lib.pipeline.config_estimator import MODEL, TARGET, estimator_problems

# train_random_forest.pipeline.GRID_SEARCH_KEYS (a test keeps the two equal).
GRID_SEARCH_KEYS = ("param_grid", "cv", "scoring")

# Keys that moved, and where to: an old key fails, naming the new one, rather than being
# ignored (its value would silently stop counting).
MOVED_KEYS = {
    "random_forest_pipeline.random_forest": MODEL,
    "random_forest_pipeline.features": "dataset",
}


def moved_key_problems(overrides: list[str]) -> list[str]:
    """What is wrong with each command-line override that sets a moved key (:data:`MOVED_KEYS`).

    Hydra refuses them before any check runs ("Could not override ..."), without naming the
    new key: main.py looks at the overrides first.

    Parameters
    ----------
    overrides : list of str
        Hydra's command line, e.g. ``["random_forest_pipeline.random_forest.max_depth=20"]``.

    Returns
    -------
    list of str
        E.g. ``"random_forest_pipeline.random_forest.max_depth=20: moved: ...; set
        model.max_depth=20 instead"``; empty when no override sets a moved key.
    """
    problems = []
    for override in overrides:
        key, equals, value = override.lstrip("+~").partition("=")
        for old, new in MOVED_KEYS.items():
            if key == old or key.startswith(f"{old}."):
                problems.append(f"{override}: {_moved(old, new, key, f'{equals}{value}')}")
    return problems


def _moved(old: str, new: str, key: str, assignment: str = "") -> str:
    if new == "dataset":
        return (
            "moved: the features are the data contract's, the config group 'dataset' "
            "(conf/dataset/, chosen with dataset=NAME); set the role of a column instead, "
            "dataset.columns.<column>.role=numerical|categorical|text (feature: false keeps it "
            "out of the model)"
        )
    example = f"{new}{key.removeprefix(old)}{assignment}" if key != old else f"{new}.<argument>"
    return (
        f"moved: the model is the config group {new!r} (conf/{new}/, chosen with "
        f"{new}=NAME); set {example} instead"
    )


def _model_problems(check: Checker) -> None:
    for old, new in MOVED_KEYS.items():
        if check.get(old) not in ({}, None, ABSENT):
            check.add(old, check.get(old), _moved(old, new, old))
    model = check.get(MODEL)
    if not isinstance(model, dict) or TARGET not in model:
        if model is not ABSENT:
            check.add(MODEL, model, f"must be a mapping with {TARGET} (a file of conf/{MODEL}/)")
        return
    arguments = {k: v for k, v in model.items() if k != TARGET}
    check.problems.extend(estimator_problems(model[TARGET], arguments))


def _check_param_grid(check: Checker, key: str, param_grid: Any) -> None:
    if not isinstance(param_grid, dict) or not param_grid:
        check.add(key, param_grid, "must map pipeline parameters to lists")
        return
    for name, values in param_grid.items():
        if not isinstance(values, list) or not values:
            check.add(f"{key}.{name}", values, "must be a non-empty list")
        elif name.startswith("classifier__"):
            # Each value of the list as the model argument it sets (the step checks the
            # processor__ ones against the built pipeline).
            argument = name.removeprefix("classifier__")
            target = check.get(f"{MODEL}.{TARGET}")
            for i, value in enumerate(values):
                for problem in estimator_problems(target, {argument: value}):
                    check.add(f"{key}.{name}[{i}]", value, problem.allowed)
        elif not name.startswith("processor__"):
            check.add(
                f"{key}.{name}",
                values,
                "must be a pipeline parameter: classifier__<model argument> or processor__...",
            )


def _check_grid_search(check: Checker, key: str) -> None:
    grid = check.get(key)
    if grid is None or grid is ABSENT:
        return
    if not isinstance(grid, dict) or set(grid) != set(GRID_SEARCH_KEYS):
        check.add(key, grid, f"must be null or a mapping of exactly {', '.join(GRID_SEARCH_KEYS)}")
        return
    _check_param_grid(check, f"{key}.param_grid", grid["param_grid"])
    if not (is_int(grid["cv"]) and grid["cv"] >= 2):
        check.add(f"{key}.cv", grid["cv"], "must be an int >= 2 (the number of folds)")
    from sklearn.metrics import get_scorer_names  # only when a grid search is asked for

    if grid["scoring"] not in get_scorer_names():
        check.add(
            f"{key}.scoring",
            grid["scoring"],
            "must be a scikit-learn scorer name, e.g. roc_auc_ovo",
        )


def check_model(check: Checker) -> None:
    """Check the model (config group ``model``) and the ``random_forest_pipeline`` section."""
    _model_problems(check)
    check.require(
        "random_forest_pipeline.tfidf.max_features",
        lambda v: v is None or (is_int(v) and v >= 1),
        "must be null (every term) or an int >= 1",
    )
    _check_grid_search(check, "random_forest_pipeline.grid_search")
    check_name_key(
        check, "random_forest_pipeline.export_artifact", "an artifact name", nullable=True
    )
    check.require(
        "random_forest_pipeline.predict_n_jobs",
        lambda v: v is None or (is_int(v) and v != 0),
        "must be null (as trained) or a non-zero int (-1: every core)",
    )
