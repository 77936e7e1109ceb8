"""The installed distributions a step ran with, for its record (:mod:`util_lib.step.provenance`).

Which installed distribution provides which top-level module, and their versions
(:class:`DistributionMap`), is kept in a file of the user's cache (``$UTIL_LIB_CACHE_DIR``,
else ``$XDG_CACHE_HOME/util_lib``, else ``~/.cache/util_lib``), one per interpreter and set of
install folders, valid while the fingerprint of what is installed stays the same
(:func:`installed_fingerprint`). :class:`InstalledNow` is the driver's view of what is
installed now, asked once per pipeline.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from util_lib.artifacts.digests import json_sha256, text_sha256

logger = logging.getLogger(__name__)

# Where the map of installed distributions is kept between processes (see the docstring).
CACHE_DIR_ENV = "UTIL_LIB_CACHE_DIR"

_METADATA_SUFFIXES = (".dist-info", ".egg-info")


# ---------------------------------------------------------------------------- distributions
def _metadata_folders() -> list[tuple[str, list[tuple[str, int]]]]:
    """Each ``sys.path`` folder holding installed distributions, in path order, with the names
    and modification times of their metadata folders (``*.dist-info``, ``*.egg-info``)."""
    found = []
    seen = set()
    for entry in sys.path:
        folder = os.path.realpath(entry or ".")
        if folder in seen:
            continue
        seen.add(folder)
        try:
            with os.scandir(folder) as entries:
                metadata = sorted(
                    (e.name, e.stat().st_mtime_ns)
                    for e in entries
                    if e.name.endswith(_METADATA_SUFFIXES)
                )
        except OSError:  # missing, a file (a zip), unreadable: importlib.metadata skips it too
            continue
        if metadata:
            found.append((folder, metadata))
    return found


def installed_fingerprint() -> str:
    """sha256 over the installed distributions on ``sys.path``: each install folder, in path
    order, with its metadata folders' names (which hold the versions) and modification times.
    An install, upgrade, downgrade or removal changes it (pip replaces the metadata folder)."""
    text = json.dumps(_metadata_folders())
    return text_sha256(text)


def _cache_file(layout: list[str]) -> Path | None:
    """The cache file of this interpreter with these install folders, or None without a home."""
    folder = os.environ.get(CACHE_DIR_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
        folder = str(Path(base) / "util_lib")
    name = json_sha256([sys.executable, *layout])[:16]
    return Path(folder) / f"distributions-{name}.json"


def _save(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` in one step (readers see the old file or the new one)."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as stream:
            temporary = stream.name
            json.dump(data, stream)
        os.replace(temporary, path)
    except OSError as exc:  # no cache: the next process computes the map again
        logger.debug("cannot keep the distributions map in %s: %s", path, exc)
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


class DistributionMap:
    """Which installed distribution provides which top-level module, and their versions: read
    from the cache file while the fingerprint holds, else asked of importlib.metadata."""

    def __init__(self) -> None:
        folders = _metadata_folders()
        self.fingerprint = json_sha256(folders)
        self._file = _cache_file([folder for folder, _ in folders])
        self._data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self._file.read_text())
            if data.get("fingerprint") == self.fingerprint:
                self._data = data
        self.cold = not self._data
        if self.cold:
            self._data = {
                "fingerprint": self.fingerprint,
                "modules": importlib.metadata.packages_distributions(),
                "versions": {},
            }
        self._changed = self.cold

    @property
    def modules(self) -> dict[str, list[str]]:
        return self._data["modules"]

    def version(self, name: str) -> str | None:
        versions = self._data["versions"]
        if name not in versions:
            versions[name] = installed_version(name)
            self._changed = True
        return versions[name]

    def save(self) -> None:
        if self._changed:
            _save(self._file, self._data)
            self._changed = False


def installed_version(name: str) -> str | None:
    """The version of distribution ``name`` that importlib.metadata finds now, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class InstalledNow:
    """What this interpreter has installed now, as importlib.metadata finds it: the fingerprint
    and each distribution's version, asked once (one pipeline's view)."""

    def __init__(self) -> None:
        self._fingerprint: str | None = None
        self._versions: dict[str, str | None] = {}

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = installed_fingerprint()
        return self._fingerprint

    def version(self, name: str) -> str | None:
        if name not in self._versions:
            self._versions[name] = installed_version(name)
        return self._versions[name]
