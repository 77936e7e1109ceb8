"""The safe loader's rule for the types skops does not trust by default
(util_lib/model/safe_load.py): scikit-learn's own classes and the project's transformers by rule,
so that a new scikit-learn model needs no list edit; anything else refused, by name."""

from __future__ import annotations

import pytest
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from skops.io.exceptions import UntrustedTypesFoundException

from util_lib.model.pyfunc import is_trusted, trusted_types


@pytest.mark.parametrize(
    "name",
    [
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "util_lib.model.transformers.ModeImputer",
        "util_lib.model.transformers.fill_missing_text",
        # As models exported before util_lib.model existed name them (the kept fixture's).
        "util_lib.transformers.ModeImputer",
    ],
)
def test_scikit_learn_classes_and_our_transformers_are_trusted(name: str) -> None:
    assert is_trusted(name)


@pytest.mark.parametrize(
    "name",
    [
        "posix.system",
        "builtins.eval",
        "numpy.load",
        # A scikit-learn function (a FunctionTransformer would call it): classes only.
        "sklearn.utils.shuffle",
        "sklearn.utils._testing.assert_run_python_script_without_output",
        # Imported into the transformer module, not defined there.
        "util_lib.model.transformers.check_is_fitted",
        "util_lib.model.transformers.np",
        "sklearn.no_such_module.Thing",
        "sklearnx.Thing",
    ],
)
def test_anything_else_is_refused(name: str) -> None:
    assert not is_trusted(name)


def test_refused_types_are_named() -> None:
    with pytest.raises(UntrustedTypesFoundException, match=r"\['builtins.eval', 'posix.system'\]"):
        trusted_types(["numpy.dtype", "posix.system", "builtins.eval"])


@pytest.mark.parametrize(
    "model", [HistGradientBoostingClassifier(max_iter=2), LogisticRegression()], ids=type
)
def test_another_scikit_learn_model_round_trips_with_no_list_edit(model) -> None:
    import numpy as np

    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    data = skops.io.dumps(model.fit(X, y))
    loaded = skops.io.loads(data, trusted=trusted_types(skops.io.get_untrusted_types(data=data)))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
