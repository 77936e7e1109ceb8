"""Shared code of the pipeline, in rooms by where it runs (util_lib/README.md):

- :mod:`util_lib.model`: what an exported model bundles (custom transformers, pyfunc flavor);
- :mod:`util_lib.step`: what a step imports (its tracked run, arguments, logs, data contract,
  and the command that writes a contract, ``python -m util_lib.step.contract``);
- :mod:`util_lib.artifacts`: the artifact store, its lineage, its command line, and the
  content digests every room but ``model`` shares (:mod:`util_lib.artifacts.digests`);
- :mod:`util_lib.pipeline`: what only the driver (main.py) runs;
- the leaves :mod:`util_lib.names`, :mod:`util_lib.redact`.

Submodules are imported on use so that a step pays only for what it needs
(``import util_lib`` alone imports neither MLflow nor W&B nor scikit-learn). The custom
transformers are also importable from the package itself, as in the seed
(``from util_lib import ModeImputer``); they load :mod:`util_lib.model.transformers` (and so
scikit-learn) only when first asked for (PEP 562).

Models exported before the rooms existed name two modules by their old paths: their
``MLmodel``'s loader (``util_lib.pyfunc_model``) and the types in their skops file
(``util_lib.transformers.ModeImputer``). With their own ``code/util_lib`` they load as before;
in a process that has this package loaded already (serving, evaluate, a notebook), the old
paths are found here, as the same modules at their new paths (:data:`_MOVED`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and IDEs only: nothing is imported at run time
    from importlib.machinery import ModuleSpec
    from types import ModuleType

    from util_lib.model.transformers import MeanImputer, ModeImputer, fill_missing_text

# Public name -> submodule that defines it.
_LAZY = {
    "MeanImputer": "model.transformers",
    "ModeImputer": "model.transformers",
    "fill_missing_text": "model.transformers",
}

__all__ = ["MeanImputer", "ModeImputer", "fill_missing_text"]  # the keys of _LAZY

# Old module path -> the module it now is (what models exported by earlier commits name).
_MOVED = {
    "util_lib.pyfunc_model": "util_lib.model.pyfunc",
    "util_lib.transformers": "util_lib.model.transformers",
}


class _MovedModules:
    """A meta path finder, consulted after the others: an old path of :data:`_MOVED` imports
    the module at its new path, the very same module object (one class ``ModeImputer``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in _MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(_MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path ran already."""


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        # AttributeError (not ImportError) lets `from util_lib import step` fall back to
        # importing the submodule.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
