"""The driver computes step keys while other threads of its process work: the lineage
libraries' import thread, W&B and pydantic (which ``ast.parse`` docstrings), the tracking
server. On CPython 3.11 before 3.11.9 the AST constructor keeps global state that is not
thread-safe (python/cpython gh-106905): two threads building ASTs at once end in
``SystemError: AST constructor recursion depth mismatch``. The key builds none."""

from __future__ import annotations

import ast
import importlib
import shutil
import sys
import threading
from pathlib import Path

import pytest

from util_lib.artifacts.mlflow_store import MlflowArtifactStore
from util_lib.pipeline.cache import StepCache
from util_lib.pipeline.graph import get_step
from util_lib.pipeline.setup import step_parameters
from util_lib.step.run import start_run

REPO = Path(__file__).resolve().parents[2]
# Keys of this many step folders never digested before. The old key, which parsed the step's
# sources and the util_lib modules they import (some 15 ast.parse calls a key), raised the
# SystemError within the first 15 keys in each of 13 runs on 3.11.7 (issue 19).
KEYS = 100


class _Cyclic:
    """Garbage as a busy process makes it: a cycle with a finalizer. The collector runs the
    finalizer's Python code wherever it collects, inside the AST constructor too, and there the
    interpreter may hand the GIL to another thread."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        pass


def _parse(source: str, stop: threading.Event, seen: dict[str, list]) -> None:
    """What W&B and pydantic do for docstrings in their threads."""
    while not stop.is_set():
        try:
            ast.parse(source)
            seen["parsed"].append(1)
        except SystemError as exc:
            seen["errors"].append(exc)


def _import(folder: Path, stop: threading.Event, seen: dict[str, list]) -> None:
    """A thread that imports modules from source (the lineage libraries' import thread)."""
    number = 0
    while not stop.is_set():
        name = f"fresh_module_{number}"
        (folder / f"{name}.py").write_text(f"def f():\n    return {number}\n" * 20)
        try:
            importlib.import_module(name)
            seen["imported"].append(1)
        except SystemError as exc:
            seen["errors"].append(exc)
        sys.modules.pop(name, None)
        for _ in range(200):
            _Cyclic()
        number += 1


def test_keys_are_computed_while_other_threads_build_asts_and_import(
    tracking: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra import compose, initialize_config_dir
    from mlflow import MlflowClient

    import util_lib.pipeline.config  # noqa: F401 - conf/ on the search path
    from util_lib.step.trackers import get_or_create_experiment

    # Composed as main.py's Hydra does: data.* default to the dataset group's values.
    with initialize_config_dir(config_dir=str(REPO), version_base="1.3"):
        config = compose(config_name="config")
    data = tracking / "d.parquet"
    data.write_text("rows")
    with start_run("producer", "test") as run:
        written = run.log_artifact(data, "preprocessed_data", "data", "d")
    cache = StepCache(
        MlflowClient(),
        get_or_create_experiment(config.main.project_name),
        MlflowArtifactStore(),
        config,
    )
    step = get_step("segregate")
    params = step_parameters("segregate", config, {"preprocessed_data": written}, tracking)
    ignore = shutil.ignore_patterns("__pycache__")
    folders = [
        shutil.copytree(REPO / "segregate", tracking / f"step{n}" / "segregate", ignore=ignore)
        for n in range(KEYS)
    ]
    modules = tracking / "modules"
    modules.mkdir()
    monkeypatch.syspath_prepend(str(modules))

    stop = threading.Event()
    seen: dict[str, list] = {"parsed": [], "imported": [], "errors": []}
    source = (REPO / "util_lib" / "artifacts" / "digests.py").read_text()
    threads = [
        threading.Thread(target=_parse, args=(source, stop, seen), daemon=True),
        threading.Thread(target=_import, args=(modules, stop, seen), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        keys = {cache.key(step, params, "local", (str(folder), None)) for folder in folders}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert len(keys) == 1 and None not in keys  # the same step: one key
    assert seen["parsed"] and seen["imported"]  # the other threads did work meanwhile
    assert not seen["errors"], seen["errors"][:3]
