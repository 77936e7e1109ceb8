"""The step cache: reuse a finished run of a step whose code, parameters, inputs and environment
are the same as now, instead of running it again.

Before each ``mlflow.run``, main.py asks :meth:`StepCache.key` for the step's key: a sha256 over

- the step's code: every file of its folder (not ``__pycache__`` nor Markdown) and every
  ``util_lib`` module it imports, directly or through other ``util_lib`` modules;
- its parameters, except that each artifact it reads counts by the content digest of the exact
  version it resolves to (so a byte-identical upstream output keeps the key), a config section
  written to a file counts by the file's content, and a data file by its location and its
  sha256 (the file's, or the ``sha256`` parameter that pins it);
- the pinned environment: the environment manager, the step's ``conda.yml`` and Python's
  version.

A FINISHED run of that step with that key (tag :data:`CACHE_TAG`) in the pipeline's experiment
is reused when every artifact it wrote still resolves. A step that cannot be keyed (a URL
without a sha256, steps from a git repository without a version, an input that does not
resolve) always runs. The tag is set only on a run that finished, so a failed step runs again:
the same command after a failure resumes at the failed step.

The key a finished run is remembered under is computed again once it has finished: a step may
move what it depends on (check_data gives a passing first version the ``reference`` alias that
its own key reads), and the next identical command sees the state the run left. Inputs read as
``name:latest`` are pinned to the exact version before the step runs (:meth:`pin_inputs`), so
both keys, and the step, see the same version.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.arguments import PROJECT_ROOT, is_url, optional
from util_lib.digests import CODE_SKIPPED_SUFFIXES, file_sha256, folder_files, manifest_digest
from util_lib.graph import Step
from util_lib.tags import CACHE_TAG, STEP_TAG, WRITTEN_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from util_lib.artifact_store import ArtifactStore

logger = logging.getLogger(__name__)

UTIL_LIB = PROJECT_ROOT / "util_lib"


def util_lib_imports(sources: list[Path]) -> set[str]:
    """The ``util_lib`` modules that ``sources`` import, directly or through each other."""
    found: set[str] = set()
    pending = list(sources)
    while pending:
        tree = ast.parse(pending.pop().read_text(), filename="<source>")
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("util_lib."):
                    continue
                module = name.split(".")[1]
                path = UTIL_LIB / f"{module}.py"
                if path.is_file() and module not in found:
                    found.add(module)
                    pending.append(path)
    return found


@cache
def code_digest(folder: Path) -> str:
    """Digest of a step's code: its folder's files (not Markdown) and the util_lib modules
    they import."""
    own = folder_files(folder, skip_suffixes=CODE_SKIPPED_SUFFIXES)
    modules = util_lib_imports([folder / name for name in own if name.endswith(".py")])
    files = {f"{folder.name}/{name}": digest for name, digest in own.items()}
    for module in sorted(modules | {"__init__"}):
        files[f"util_lib/{module}.py"] = file_sha256(UTIL_LIB / f"{module}.py")
    return manifest_digest(files)


@dataclass(frozen=True)
class CacheHit:
    """A finished run reused for a step."""

    run: Run
    key: str


class StepCache:
    """Keys of steps and the finished runs that carry them.

    Parameters
    ----------
    client : mlflow.MlflowClient
        The tracking store's client.
    experiment_id : str
        The experiment the pipeline's steps run in.
    store : util_lib.artifact_store.ArtifactStore
        Resolves the inputs to exact versions (and their digests).
    config : omegaconf.DictConfig
        The pipeline's configuration (for a ``path`` parameter's ``sha256`` key).
    """

    def __init__(
        self, client: MlflowClient, experiment_id: str, store: ArtifactStore, config: Any
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.store = store
        self.config = config
        self._versions: dict[str, Any] = {}  # exact specs (name:vN never change) resolved

    def _resolve(self, spec: str) -> Any:
        """``store.resolve``, once per exact version."""
        if spec in self._versions:
            return self._versions[spec]
        version = self.store.resolve(spec)
        if re.fullmatch(r".+:v\d+", spec):
            self._versions[spec] = version
        return version

    def key(
        self, step: Step, params: dict[str, Any], env_manager: str, source: tuple[str, str | None]
    ) -> str | None:
        """The step's cache key, or None when the step must run whatever ran before.

        ``source`` is (project URI, git version) as main.step_uri gives it.
        """
        uri, version = source
        if "#" in uri:  # a step of a git repository
            if not version:
                return None  # a default branch moves: its code is not known before the clone
            code = f"{uri}@{version}"
            folder = None
        else:
            folder = Path(uri)
            code = code_digest(folder)
        values: dict[str, Any] = {}
        for param in step.parameters:
            value = params[param.name]
            if param.source in ("input", "artifact"):
                try:
                    values[param.name] = "artifact:" + self._resolve(value).digest
                except Exception:  # an unset alias or a missing input: let the step say so
                    if param.source == "input":
                        return None
                    values[param.name] = f"unresolved:{value}"
            elif param.source == "section":
                values[param.name] = "file:" + file_sha256(Path(value))
            elif param.source == "path":
                # A data file whose expected digest is the step's `sha256` is pinned by it.
                pinned = optional(str(params.get("sha256", "")))
                if pinned is None and is_url(value):
                    return None  # a URL's content may change without notice
                # Where it comes from counts too: another URL (a typo) runs the step again.
                values[param.name] = f"{value} sha256:{pinned or file_sha256(Path(value))}"
            else:
                values[param.name] = value
        conda = folder / "conda.yml" if folder is not None else None
        environment = {
            "manager": env_manager,
            "python": sys.version.split()[0],
            "conda.yml": file_sha256(conda) if conda and conda.is_file() else "",
        }
        payload = {"step": step.name, "code": code, "parameters": values, "env": environment}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def pin_inputs(self, step: Step, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with each input read as ``name:latest`` replaced by its exact version."""
        pinned = dict(params)
        for param in step.parameters:
            if param.source == "input" and str(params[param.name]).endswith(":latest"):
                # When it does not resolve, the step itself says what is missing.
                with contextlib.suppress(Exception):
                    pinned[param.name] = self._resolve(params[param.name]).spec
        return pinned

    def lookup(self, step: Step, key: str) -> CacheHit | None:
        """The newest FINISHED run of ``step`` with ``key`` whose outputs still resolve and
        whose outputs' files still match their digests (``store.check_files``): a damaged
        output makes the step run again."""
        from util_lib.store import ArtifactIntegrityError

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{CACHE_TAG}` = '{key}' and tags.`{STEP_TAG}` = '{step.name}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        for run in runs:
            tag = run.data.tags.get(WRITTEN_TAG, "")
            written = [s for s in tag.split(",") if s]
            try:
                for spec in written:
                    self.store.check_files(self._resolve(spec))
            except ArtifactIntegrityError as exc:
                logger.warning("%s: run %s not reused: %s", step.name, run.info.run_id, exc)
                continue
            except Exception:
                logger.info("%s: an output of run %s is gone", step.name, run.info.run_id)
                continue
            return CacheHit(run, key)
        return None

    def remember(self, run_id: str, key: str) -> None:
        """Mark the finished run ``run_id`` as the result of ``key``."""
        self.client.set_tag(run_id, CACHE_TAG, key)
