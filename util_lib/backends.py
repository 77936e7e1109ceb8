"""Which artifact store and which W&B mode a run uses, and why.

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
from dataclasses import dataclass
from urllib.parse import urlparse

from util_lib.environment import ARTIFACT_STORE_ENV

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
