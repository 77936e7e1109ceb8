"""The checks of config.yaml's model section (``random_forest_pipeline``): the forest's
arguments by scikit-learn's own rules (:func:`forest_problems`), the grid search, the feature
lists and the export's name. Imported with :mod:`util_lib.pipeline.config`; scikit-learn is
imported only when a check needs it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from util_lib.pipeline.config_checks import (
    ABSENT,
    Checker,
    Problem,
    check_name_key,
    is_int,
    is_text,
)

# train_random_forest.pipeline.GRID_SEARCH_KEYS (a test keeps the two equal).
GRID_SEARCH_KEYS = ("param_grid", "cv", "scoring")

FOREST = "random_forest_pipeline.random_forest"


def _checked_marker(arguments: dict[str, Any]) -> Path | None:
    """Where a passed check of these exact arguments under this scikit-learn is remembered."""
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = json.dumps(
            [version("scikit-learn"), arguments], sort_keys=True, default=repr, allow_nan=True
        )
    except (PackageNotFoundError, TypeError, ValueError):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "util_lib" / "forest_checks" / hashlib.sha256(text.encode()).hexdigest()


def forest_problems(arguments: dict[str, Any], key: str = FOREST) -> list[Problem]:
    """Check keyword arguments of ``RandomForestClassifier`` with scikit-learn's own rules.

    Each argument is validated alone against the class's ``_parameter_constraints`` (what
    ``RandomForestClassifier(**arguments).fit`` checks first), so that every bad one is named.
    Arguments that passed once under the same scikit-learn version pass again without it:
    importing scikit-learn costs the driver 1.3 s before its first step (a marker file per
    passed set, named by the digest of the version and the arguments, in
    ``$XDG_CACHE_HOME/util_lib/forest_checks``, default ``~/.cache``).
    """
    marker = _checked_marker(arguments)
    if marker is not None and marker.is_file():
        return []
    problems = _validate_forest(arguments, key)
    if not problems and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only home: the check just runs every time
            pass
    return problems


def _validate_forest(arguments: dict[str, Any], key: str) -> list[Problem]:
    import sklearn
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    names = RandomForestClassifier._get_param_names()
    constraints = RandomForestClassifier._parameter_constraints
    problems = []
    for name, value in arguments.items():
        if name not in names:
            problems.append(
                Problem(
                    f"{key}.{name}",
                    value,
                    f"not an argument of RandomForestClassifier (scikit-learn "
                    f"{sklearn.__version__}); its arguments: {', '.join(names)}",
                )
            )
            continue
        try:
            validate_parameter_constraints(
                {name: constraints.get(name, "no_validation")},
                {name: value},
                caller_name="RandomForestClassifier",
            )
        except InvalidParameterError as error:
            # "The 'x' parameter of RandomForestClassifier must be ... Got ... instead."
            match = re.search(r"(must be .*)\. Got .* instead\.$", str(error), re.DOTALL)
            allowed = f"{match[1]} (scikit-learn)" if match else str(error)
            problems.append(Problem(f"{key}.{name}", value, allowed))
    return problems


def _check_param_grid(check: Checker, key: str, param_grid: Any) -> None:
    if not isinstance(param_grid, dict) or not param_grid:
        check.add(key, param_grid, "must map pipeline parameters to lists")
        return
    for name, values in param_grid.items():
        if not isinstance(values, list) or not values:
            check.add(f"{key}.{name}", values, "must be a non-empty list")
        elif name.startswith("classifier__"):
            # Each value of the list as the forest argument it sets (the step checks the
            # processor__ ones against the built pipeline).
            argument = name.removeprefix("classifier__")
            for i, value in enumerate(values):
                for problem in forest_problems({argument: value}):
                    check.add(f"{key}.{name}[{i}]", value, problem.allowed)
        elif not name.startswith("processor__"):
            check.add(
                f"{key}.{name}",
                values,
                "must be a pipeline parameter: classifier__<forest argument> or processor__...",
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
    forest = check.get(FOREST)
    if isinstance(forest, dict):
        check.problems.extend(forest_problems(forest))
    elif forest is not ABSENT:
        check.add(FOREST, forest, "must be a mapping of RandomForestClassifier arguments")
    check.require(
        "random_forest_pipeline.tfidf.max_features",
        lambda v: v is None or (is_int(v) and v >= 1),
        "must be null (every term) or an int >= 1",
    )
    _check_grid_search(check, "random_forest_pipeline.grid_search")
    columns = []
    for group in ("numerical", "categorical", "nlp"):
        names = check.require(
            f"random_forest_pipeline.features.{group}",
            lambda v: isinstance(v, list) and all(is_text(c) for c in v),
            "must be a list of column names",
        )
        columns += names if isinstance(names, list) else []
    if not columns:
        check.add("random_forest_pipeline.features", [], "must name at least one column")
    if repeated := sorted({c for c in columns if columns.count(c) > 1}):
        check.add("random_forest_pipeline.features", repeated, "columns listed more than once")
    check_name_key(
        check, "random_forest_pipeline.export_artifact", "an artifact name", nullable=True
    )
    check.require(
        "random_forest_pipeline.predict_n_jobs",
        lambda v: v is None or (is_int(v) and v != 0),
        "must be null (as trained) or a non-zero int (-1: every core)",
    )
