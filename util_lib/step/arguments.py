"""How every step reads its arguments: optional values and paths under the project root.

MLproject parameters arrive as strings. One reading for all steps:

- an optional value is absent when it is ``""``, ``null`` or ``none`` (any case): config.yaml's
  ``null`` reaches a step as ``null`` (main.py writes it so) or as ``None`` (a user's ``-P``);
- a local path that is relative is under the project root (the folder of ``config.yaml``),
  wherever the step or the pipeline runs from; URLs (``scheme://``) are left alone;
- a value holding a secret is never a parameter: MLflow logs every parameter and prints the
  command line. A secret is a URL with a password or a credential-named query value
  (``?token=``, :mod:`util_lib.redact`), or any URL with user-info or a query that came from
  the environment (``data.file_url='${oc.env:SONGS_URL}'``), whose every query value is then
  secret (``?code=``, ``?sig=``). The driver passes the redacted value as the parameter and
  the real one in the environment (``UTIL_LIB_SECRET_<NAME>``, :func:`hide_secrets`); the
  step takes it back with :func:`reveal`. Both register the URL
  (:func:`util_lib.redact.register_secret_url`), so that every redaction of their process
  masks its parts wherever they appear.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from util_lib.names import PROJECT_ROOT, SECRET_ENV_PREFIX
from util_lib.redact import redact_url, register_secret_url

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


def secret_env(name: str) -> str:
    """The environment variable that carries the real value of parameter ``name``."""
    return SECRET_ENV_PREFIX + name.upper()


def from_environment(value: str) -> bool:
    """Tell whether ``value`` is the value of an environment variable (``${oc.env:NAME}``)."""
    return any(value == candidate for candidate in os.environ.values())


def hide_secrets(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split step parameters into what may be recorded and the environment carrying secrets.

    A URL is secret when :func:`util_lib.redact.redact_url` masks something in it, or when it
    came from the environment (:func:`from_environment`): then every query value is masked,
    whatever its name. Each secret URL is registered in this process
    (:func:`util_lib.redact.register_secret_url`).

    Returns
    -------
    (dict, dict)
        The parameters with every secret-holding URL redacted, and ``{UTIL_LIB_SECRET_<NAME>:
        real value}`` for each one redacted.
    """
    shown, hidden = {}, {}
    for name, value in params.items():
        masked = value
        if isinstance(value, str) and is_url(value):
            masked = redact_url(value, every_query_value=from_environment(value))
        if masked != value:
            register_secret_url(value)
            hidden[secret_env(name)] = value
        shown[name] = masked
    return shown, hidden


def reveal(name: str, value: str) -> str:
    """The real value of parameter ``name``: the environment's, when ``value`` is its redaction.

    The real value is registered as a secret (:func:`util_lib.redact.register_secret_url`)
    in this process. A value that does not match (a parameter given by hand) is returned as
    it is.
    """
    real = os.environ.get(secret_env(name))
    if real is None:
        return value
    if value in (redact_url(real), redact_url(real, every_query_value=True)):
        register_secret_url(real)
        return real
    return value
