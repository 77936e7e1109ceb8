"""Which artifact store, which W&B mode and which project a run uses, and why; and
:func:`open_store`, the one place that maps a store's kind to the store.

The rule (main.artifact_store, passed to the steps as ``$UTIL_LIB_ARTIFACT_STORE``):

- ``auto`` (default): W&B artifacts when W&B is online, i.e. the user is logged in and
  ``WANDB_MODE`` is not ``offline``/``disabled``; otherwise the embedded store on MLflow's
  tracking backend.
- ``wandb``: W&B artifacts; an error when W&B is not online.
- ``mlflow``: the embedded store, whatever W&B does.

W&B itself records the runs online when logged in, offline otherwise (``wandb sync`` uploads
them later) and not at all with ``WANDB_MODE=disabled``.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from util_lib.artifacts.interface import ArtifactStore, check_project
from util_lib.names import ARTIFACT_STORE_ENV, PROJECT_ENV, PROJECT_ROOT

STORE_CHOICES = ("auto", "wandb", "mlflow")


@dataclass(frozen=True)
class Backends:
    """The resolved tracking set-up of a run."""

    wandb_mode: str  # "online" | "offline" | "disabled"
    artifact_store: str  # "wandb" | "mlflow"
    reason: str


def wandb_logged_in() -> bool:
    """Tell whether W&B credentials exist (``WANDB_API_KEY`` or a netrc entry), without I/O."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc().authenticators(host or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_mode() -> tuple[str, str]:
    """Return the W&B mode this process runs in and why."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in ("disabled", "dryrun-disabled"):
        return "disabled", "WANDB_MODE=disabled"
    if mode in ("offline", "dryrun"):
        return "offline", f"WANDB_MODE={mode}"
    if wandb_logged_in():
        return "online", "logged in to W&B"
    return "offline", "not logged in to W&B (no WANDB_API_KEY, no netrc entry)"


def choose_backends(requested: str | None = None) -> Backends:
    """Resolve the artifact store and the W&B mode.

    Parameters
    ----------
    requested : {"auto", "wandb", "mlflow"}, optional
        The store asked for; default ``$UTIL_LIB_ARTIFACT_STORE`` or ``auto``.

    Returns
    -------
    Backends
        The W&B mode, the store and a sentence saying why.

    Raises
    ------
    ValueError
        When the choice is unknown, or ``wandb`` is asked for while W&B is not online.
    """
    requested = (requested or os.environ.get(ARTIFACT_STORE_ENV) or "auto").strip().lower()
    if requested not in STORE_CHOICES:
        raise ValueError(
            f"main.artifact_store={requested!r} is not one of {', '.join(STORE_CHOICES)}"
        )
    mode, why = wandb_mode()
    if requested == "wandb":
        if mode != "online":
            raise ValueError(
                f"main.artifact_store=wandb needs W&B online, but W&B is {mode} ({why}): "
                "run `wandb login`, or use main.artifact_store=auto or mlflow"
            )
        return Backends(mode, "wandb", "main.artifact_store=wandb")
    if requested == "mlflow":
        return Backends(mode, "mlflow", f"main.artifact_store=mlflow; W&B {mode} ({why})")
    if mode == "online":
        return Backends(mode, "wandb", f"W&B is online ({why})")
    return Backends(mode, "mlflow", f"W&B is {mode} ({why})")


@lru_cache(maxsize=8)
def _read_project_name(config_path: Path) -> str | None:
    import yaml

    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return None
    project = (config.get("main") or {}).get("project_name")
    return str(project) if project is not None else None


def configured_project(config_path: Path | None = None) -> str | None:
    """``main.project_name`` of ``config_path`` (default: the project root's config.yaml).

    Read as plain YAML (the value needs no interpolation); None when the file or key is absent.
    """
    path = Path(config_path) if config_path else PROJECT_ROOT / "config.yaml"
    return _read_project_name(path.resolve())


def default_project(config_path: Path | None = None) -> str:
    """The project a store works in when it is given none.

    ``$WANDB_PROJECT`` (the pipeline sets it from ``main.project_name`` for every step, as does
    the notebooks' sandbox), else ``main.project_name`` of the project root's ``config.yaml``
    (a step or a command run on its own).

    Raises
    ------
    ValueError
        When neither is set, or the value is not a valid project name.
    """
    from_env = os.environ.get(PROJECT_ENV, "").strip()
    if from_env:
        return check_project(from_env)
    project = configured_project(config_path)
    if not project:
        path = config_path or PROJECT_ROOT / "config.yaml"
        raise ValueError(
            f"no artifact project: set {PROJECT_ENV}, main.project_name in {path}, "
            "or pass the project to the store"
        )
    return check_project(project)


def _embedded(project: str | None, wandb_run: Any, tracking_uri: str | None) -> ArtifactStore:
    from util_lib.artifacts.mlflow_store import MlflowArtifactStore

    # An offline W&B run gets a copy of each version, which `wandb sync` uploads with it.
    offline = wandb_run is not None and bool(getattr(wandb_run, "offline", False))
    return MlflowArtifactStore(tracking_uri, project, wandb_copy=wandb_run if offline else None)


def _wandb(project: str | None, wandb_run: Any, tracking_uri: str | None) -> ArtifactStore:
    from util_lib.artifacts.wandb_store import WandbArtifactStore

    return WandbArtifactStore(wandb_run, project=project)


_STORES: dict[str, Callable[[str | None, Any, str | None], ArtifactStore]] = {
    "mlflow": _embedded,
    "wandb": _wandb,
}


def open_store(
    kind: str,
    project: str | None = None,
    wandb_run: Any = None,
    tracking_uri: str | None = None,
) -> ArtifactStore:
    """The artifact store of ``kind`` (what :func:`choose_backends` picked).

    Parameters
    ----------
    kind : {"mlflow", "wandb"}
        The embedded store, or W&B's artifacts.
    project : str, optional
        The store's project; default: the W&B run's, else :func:`default_project`.
    wandb_run : wandb run, optional
        The step's W&B run: W&B's store resolves and logs through it (recording lineage);
        the embedded store gives an offline one a copy of each version it logs.
    tracking_uri : str, optional
        The embedded store's MLflow tracking URI; default MLflow's own.

    Raises
    ------
    ValueError
        When ``kind`` names no store.
    """
    try:
        factory = _STORES[kind]
    except KeyError:
        raise ValueError(f"artifact store {kind!r} is not one of {', '.join(_STORES)}") from None
    return factory(project, wandb_run, tracking_uri)
