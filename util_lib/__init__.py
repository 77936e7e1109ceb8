"""Shared code of the pipeline: tracking and artifacts, logging, custom transformers.

Submodules are imported on use so that a step pays only for what it needs
(``import util_lib`` alone imports neither MLflow nor W&B nor scikit-learn). The custom
transformers are also importable from the package itself, as in the seed
(``from util_lib import ModeImputer``); they load :mod:`util_lib.transformers` (and so
scikit-learn) only when first asked for (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only: nothing is imported at run time
    from util_lib.transformers import MeanImputer, ModeImputer, fill_missing_text

# Public name -> submodule that defines it.
_LAZY = {
    "MeanImputer": "transformers",
    "ModeImputer": "transformers",
    "fill_missing_text": "transformers",
}

__all__ = ["MeanImputer", "ModeImputer", "fill_missing_text"]  # the keys of _LAZY


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        # AttributeError (not ImportError) lets `from util_lib import tracking` fall back to
        # importing the submodule.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
