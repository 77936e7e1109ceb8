"""The safe loader of an exported model's fitted pipeline: skops trusting only the types that
this code's rule accepts (:func:`is_trusted`), never the list a model folder's ``MLmodel``
carries.

``mlflow.sklearn.load_model`` trusts the list in ``MLmodel``, so whoever can edit a model folder
could make a hostile file load; here the rule is decided from this code: scikit-learn's own
classes, the project's transformers (:mod:`util_lib.model.transformers`) and ``numpy.dtype``.
A file asking for any other type, or a pickle, is refused. The export (which records the same
list in ``MLmodel``), the pyfunc flavor (:mod:`util_lib.model.pyfunc`) and evaluate use it.
Bundled with the model (``code/util_lib/model/``); it imports nothing of util_lib outside
``model/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from util_lib.model import transformers

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
