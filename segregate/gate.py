"""Only checked data is split: the verdict check_data recorded on the input's version."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

ALLOW_OVERRIDE = "data.allow_unchecked=true (segregate alone: -P allow_unchecked=true)"


class UncheckedDataError(ValueError):
    """The input failed its data check, or was never checked."""


def require_checked(version: Any, allow_unchecked: bool = False) -> None:
    """Refuse a version whose last data check failed, or that was never checked.

    Parameters
    ----------
    version : util_lib.artifacts.interface.ArtifactVersion
        The input's resolved version; its ``check`` (``passed``, ``failed`` or ``""``) and
        ``check_run_id`` are what check_data recorded.
    allow_unchecked : bool, default=False
        Proceed anyway, with a warning.

    Raises
    ------
    UncheckedDataError
        Naming the version, the check run (and where to look at it) or the step to run first.
    """
    if version.check == "passed":
        logger.info("%s passed its data check (run %s)", version.spec, version.check_run_id)
        return
    listing = f"python -m util_lib.artifacts list {version.name}"
    if version.check == "failed":
        problem = (
            f"{version.spec} failed its data check (check_data run {version.check_run_id}): "
            f"see which checks failed in `mlflow ui` (run {version.check_run_id}) or in the "
            f"log; `{listing}` shows each version's check"
        )
    else:
        problem = (
            f"{version.spec} has not been checked: run check_data on it first (keep check_data "
            f"in main.execute_steps, or `mlflow run check_data --env-manager local "
            f"-P sample_artifact={version.spec}`); `{listing}` shows each version's check"
        )
    if allow_unchecked:
        logger.warning("%s; splitting it anyway (allow_unchecked=true)", problem)
        return
    raise UncheckedDataError(f"{problem}; to split it anyway, set {ALLOW_OVERRIDE}")
