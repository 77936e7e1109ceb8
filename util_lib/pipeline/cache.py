"""The step cache: reuse a finished run of a step whose code, parameters, inputs and environment
are the same as now, instead of running it again.

Before each ``mlflow.run``, main.py asks :meth:`StepCache.key` for the step's key: a sha256 over

1. the step's folder: every file of it (not ``__pycache__``, Markdown, hidden files or run
   outputs), or for a step cloned from git, the repository and its version;
2. its parameters, except that each artifact it reads counts by the content digest of the exact
   version it resolves to (so a byte-identical upstream output keeps the key), a config section
   written to a file counts by the file's content, and a data file by its location and its
   sha256 (the file's, or the ``sha256`` parameter that pins it);
3. the pinned environment: the environment manager, the step's ``conda.yml`` and the driver's
   Python version.

A FINISHED run of that step with that key (tag :data:`CACHE_TAG`) in the pipeline's experiment
is reused (:meth:`StepCache.lookup`) only when, in addition, what the run recorded as it ended
(util_lib/step/provenance.py, where each rule is spelled out) still holds:

4. the run has that record (runs made before it existed never are reused);
5. every source file it loaded, of the project (other steps' packages, ``util_lib`` and its
   subpackages, whatever the import form) or of no distribution, still has the recorded content
   (a step of a local folder);
6. with ``--env-manager local``: the steps' interpreter (the driver's) is the recorded Python,
   and every installed distribution whose modules it loaded has the recorded version;

and every artifact it wrote still resolves. The key is computed without reading any source as
Python (no ``ast`` in the driver: CPython 3.11 before 3.11.9 crashes when two threads build
ASTs at once, python/cpython gh-106905); what the step imported is what it recorded.

A step that cannot be keyed (a URL without a sha256, steps from a git repository without a
version, an input that does not resolve) always runs. The key is set only on a run that
finished, so a failed step runs again: the same command after a failure resumes at the failed
step.

The key a finished run is remembered under is computed again once it has finished: a step may
move what it depends on (check_data gives a passing first version the ``reference`` alias that
its own key reads), and the next identical command sees the state the run left. Inputs read as
``name:latest`` or ``name:current`` are pinned to the exact version before the step runs
(:meth:`pin_inputs`), so both keys, and the step, see the same version.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.artifacts.digests import (
    CODE_SKIPPED_SUFFIXES,
    file_sha256,
    folder_files,
    json_sha256,
    manifest_digest,
)
from util_lib.names import CACHE_TAG, STEP_TAG, WRITTEN_TAG
from util_lib.pipeline.graph import Step
from util_lib.step.arguments import is_url, optional
from util_lib.step.distributions import InstalledNow
from util_lib.step.provenance import stale

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from util_lib.artifacts.interface import ArtifactStore

logger = logging.getLogger(__name__)


def code_digest(folder: Path) -> str:
    """Digest of a step's folder: its files (not Markdown, caches or run outputs), by path.

    What else the step imports is checked against what its run recorded (:meth:`lookup`).
    """
    own = folder_files(folder, skip_suffixes=CODE_SKIPPED_SUFFIXES)
    return manifest_digest({f"{folder.name}/{name}": digest for name, digest in own.items()})


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
    store : util_lib.artifacts.interface.ArtifactStore
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
        self._installed = InstalledNow()  # the steps' distributions (local), asked once

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
        return json_sha256(payload)

    def pin_inputs(self, step: Step, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with each input read as ``name:latest`` or ``name:current`` replaced by its
        exact version."""
        pinned = dict(params)
        for param in step.parameters:
            moving = str(params[param.name]).endswith((":latest", ":current"))
            if param.source == "input" and moving:
                # When it does not resolve, the step itself says what is missing.
                with contextlib.suppress(Exception):
                    pinned[param.name] = self._resolve(params[param.name]).spec
        return pinned

    def lookup(
        self, step: Step, key: str, env_manager: str, source: tuple[str, str | None]
    ) -> CacheHit | None:
        """The newest FINISHED run of ``step`` with ``key`` whose record of what it ran on still
        holds (the module docstring's rules 4-6) and whose outputs' files still match their
        digests (``store.check_files``): a damaged output makes the step run again.

        ``env_manager`` and ``source`` as for :meth:`key`.
        """
        from util_lib.artifacts.interface import ArtifactIntegrityError

        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{CACHE_TAG}` = '{key}' and tags.`{STEP_TAG}` = '{step.name}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        uri, _ = source
        root = None if "#" in uri else Path(uri).resolve().parent  # a git step: its version
        installed = self._installed if env_manager == "local" else None
        for run in runs:
            why = stale(run.data.tags, root, installed)
            if why:
                logger.info("%s: run %s not reused: %s", step.name, run.info.run_id, why)
                continue
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
