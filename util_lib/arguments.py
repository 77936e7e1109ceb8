"""How every step reads its arguments: optional values and paths under the project root.

MLproject parameters arrive as strings. One reading for all steps:

- an optional value is absent when it is ``""``, ``null`` or ``none`` (any case): config.yaml's
  ``null`` reaches a step as ``null`` (main.py writes it so) or as ``None`` (a user's ``-P``);
- a local path that is relative is under the project root (the folder of ``config.yaml``),
  wherever the step or the pipeline runs from; URLs (``scheme://``) are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_NULLS = frozenset({"", "null", "none"})
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def optional(value: str | None) -> str | None:
    """Return ``value`` stripped, or None when it spells "no value" (``""``, null, none)."""
    if value is None or value.strip().lower() in _NULLS:
        return None
    return value.strip()


def null_or(value: object) -> str:
    """Write a config value as a step parameter: ``null`` for None, else ``str(value)``."""
    return "null" if value is None else str(value)


def is_url(value: str) -> bool:
    """Tell whether ``value`` is a URL (``scheme://...``) rather than a local path."""
    return bool(_URL.match(value))


def project_path(value: str, root: Path = PROJECT_ROOT) -> str:
    """Make a relative local path absolute under ``root`` (the project root); keep URLs.

    Parameters
    ----------
    value : str
        A local path (absolute, or relative to the project root) or a URL.
    root : pathlib.Path, default=PROJECT_ROOT
        The folder relative paths are under.

    Returns
    -------
    str
        The URL unchanged, or the absolute path.
    """
    if is_url(value):
        return value
    return str((root / Path(value).expanduser()).resolve())
