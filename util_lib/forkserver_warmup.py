"""What the fork server (:mod:`util_lib.forkserver`) loads ahead of the steps, and in which
order: the modules every step imports, then each step's (``pipeline.yaml``'s ``imports``),
and the work the steps do once per process whatever their data (:data:`WARM_CALLS`); the
variables those imports read (:data:`IMPORT_TIME_VARIABLES`).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

# MLflow's SQLAlchemy store (0.9 s): only steps that open the store themselves import it.
STORE_MODULE = "mlflow.store.tracking.sqlalchemy_store"

# What every step imports besides the standard library, loaded first; each step's own heavy
# modules are declared in pipeline.yaml (``imports``). Whatever fails to import is skipped (a
# step then imports it itself).
COMMON_MODULES = (
    "mlflow",
    "mlflow.tracking",
    "mlflow.tracking.request_header",
    "mlflow.store.tracking.rest_store",
    "mlflow.data.pandas_dataset",
    "wandb",
    "wandb.sdk.launch",  # wandb.init imports it, and IPython
    "IPython",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
)


# Variables that libraries read while being imported: a step whose value differs from the
# server's starts cold (the warm modules would not be what its own imports would give).
IMPORT_TIME_VARIABLES = (
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "MPLBACKEND",
    "MPLCONFIGDIR",
    "HOME",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "SCIPY_ARRAY_API",
)


def _draw_text() -> None:
    """Render a line of text: matplotlib loads its font and glyphs on the first figure."""
    from io import BytesIO

    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1))
    figure.text(0.5, 0.5, "warm 0.95")
    figure.savefig(BytesIO(), format="png")


def _installed_packages() -> None:
    """MLflow's map of the installed packages, which it builds (0.8 s here) for every model
    it saves (requirements_utils checks the model's requirements against it): built once."""
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()


# What the steps compute once per process whatever their data, run after the imports: each
# when the module that needs it is among them.
WARM_CALLS = (("mlflow.sklearn", _installed_packages), ("matplotlib.figure", _draw_text))


class WarmUp:
    """The server's queue of modules to import, and of WARM_CALLS, each run right after the
    module it needs; which modules each step needs."""

    def __init__(self, modules: list[str]) -> None:
        self.queue: list[Any] = []
        self.seen: set[str] = set()
        self.done: set[Any] = set()
        self.initial = list(modules)
        self.needs: dict[str, list[str]] = {}
        self.add(modules)

    def __bool__(self) -> bool:
        return bool(self.queue)

    def add(self, modules: list[str], step: str | None = None) -> None:
        if step:
            self.needs[step] = list(modules)
        for name in modules:
            if name not in self.seen:
                self.seen.add(name)
                self.queue.append(name)
                self.queue.extend(call for needs, call in WARM_CALLS if needs == name)

    def ready(self, step: str) -> bool:
        """Whether what every step and ``step`` need is imported (or was tried)."""
        wanted = [*self.initial, *self.needs.get(step, ())]
        return not self.queue or all(name in self.done for name in wanted)

    def first(self, step: str) -> None:
        """Import ``step``'s modules before anything else still queued."""
        wanted = set(self.needs.get(step, ()))
        calls = {call for needs, call in WARM_CALLS if needs in wanted}
        ahead = [item for item in self.queue if item in wanted or item in calls]
        self.queue = ahead + [item for item in self.queue if item not in ahead]

    def next(self) -> None:
        if self.queue:
            item = self.queue.pop(0)
            with contextlib.suppress(Exception):  # a module a step may not even need
                importlib.import_module(item) if isinstance(item, str) else item()
            self.done.add(item)
