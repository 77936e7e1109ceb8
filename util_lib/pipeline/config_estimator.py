"""The check of the model: the config group ``model``'s ``_target_`` and keyword arguments, by
scikit-learn's own rules for the class it names (:func:`estimator_problems`).

Nothing here knows a model family: the class is imported from ``_target_`` and its arguments
are validated against its own ``_parameter_constraints``. scikit-learn is imported only when
a set of arguments has not passed before (see :func:`estimator_problems`).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

from util_lib.pipeline.config_checks import Problem
from util_lib.step.private_apis import argument_error, estimator_arguments

MODEL = "model"
TARGET = "_target_"
# The safe loader (util_lib/model/safe_load.py) trusts scikit-learn's own classes only: a model of
# another library could be trained but never loaded back, so the check refuses it first.
SKLEARN_PREFIX = "sklearn."
_EXAMPLE = "sklearn.ensemble.HistGradientBoostingClassifier"


def estimator_class(target: Any) -> type:
    """The scikit-learn classifier class that ``target`` (``module.Class``) names.

    Raises
    ------
    ValueError
        When ``target`` is not a dotted name, does not import, or is not a scikit-learn
        classifier class; the message says which.
    """
    from sklearn.base import ClassifierMixin

    if not isinstance(target, str) or "." not in target:
        raise ValueError("must name a scikit-learn classifier class, e.g. " + _EXAMPLE)
    if not target.startswith(SKLEARN_PREFIX):
        raise ValueError(
            "must be a class of scikit-learn (sklearn.*): the exported model's safe loader "
            "trusts scikit-learn's own types only, e.g. " + _EXAMPLE
        )
    module_name, _, name = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise ValueError(f"no such class in scikit-learn; e.g. {_EXAMPLE}") from None
    if not (isinstance(found, type) and issubclass(found, ClassifierMixin)):
        raise ValueError(f"not a classifier class of scikit-learn; e.g. {_EXAMPLE}")
    return found


def _checked_marker(target: str, arguments: dict[str, Any]) -> Path | None:
    """Where a passed check of these exact arguments under this scikit-learn is remembered."""
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = json.dumps(
            [version("scikit-learn"), target, arguments],
            sort_keys=True,
            default=repr,
            allow_nan=True,
        )
    except (PackageNotFoundError, TypeError, ValueError):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "util_lib" / "model_checks" / hashlib.sha256(text.encode()).hexdigest()


def estimator_problems(target: Any, arguments: dict[str, Any], key: str = MODEL) -> list[Problem]:
    """Check a ``_target_`` class and its keyword arguments with scikit-learn's own rules.

    Each argument is validated alone against the class's ``_parameter_constraints`` (what
    ``fit`` checks first), so that every bad one is named. Arguments that passed once under the
    same scikit-learn version pass again without it: importing scikit-learn costs the driver
    1.3 s before its first step (a marker file per passed set, named by the digest of the
    version, the class and the arguments, in ``$XDG_CACHE_HOME/util_lib/model_checks``, default
    ``~/.cache``).

    Parameters
    ----------
    target : str
        The class, e.g. ``"sklearn.ensemble.RandomForestClassifier"``.
    arguments : dict
        Its keyword arguments (without ``_target_``).
    key : str
        The config key of the arguments, for the messages (``model.max_depth``).

    Returns
    -------
    list of Problem
        Empty when the class and every argument are good.
    """
    marker = _checked_marker(str(target), arguments)
    if marker is not None and marker.is_file():
        return []
    problems = _validate(target, arguments, key)
    if not problems and marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:  # a read-only home: the check just runs every time
            pass
    return problems


def _validate(target: Any, arguments: dict[str, Any], key: str) -> list[Problem]:
    import sklearn

    try:
        cls = estimator_class(target)
    except ValueError as error:
        return [Problem(f"{key}.{TARGET}", target, str(error))]
    names = estimator_arguments(cls)
    problems = []
    for name, value in arguments.items():
        if name not in names:
            problems.append(
                Problem(
                    f"{key}.{name}",
                    value,
                    f"not an argument of {cls.__name__} (scikit-learn {sklearn.__version__}); "
                    f"its arguments: {', '.join(names)}",
                )
            )
        elif error := argument_error(cls, name, value):
            # "The 'x' parameter of RandomForestClassifier must be ... Got ... instead."
            match = re.search(r"(must be .*)\. Got .* instead\.$", error, re.DOTALL)
            allowed = f"{match[1]} (scikit-learn)" if match else error
            problems.append(Problem(f"{key}.{name}", value, allowed))
    return problems
