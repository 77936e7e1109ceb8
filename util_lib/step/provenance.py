"""What a step's process really ran on, recorded on its run as it ends, and checked by the step
cache (util_lib/pipeline/cache.py) before that run is reused.

The record (:func:`record`; :meth:`util_lib.step.run.Run.close` sets it on a run that succeeded,
before its MLflow run ends) is five tags (names in util_lib/names.py):

- :data:`~util_lib.names.LOADED_FILES_TAG`: the source files the process loaded. Every module
  in ``sys.modules`` whose file is under the project root (the step folder's parent), whatever
  imported it (``import``, relative, ``importlib.import_module``, Hydra's ``_target_``, a model
  loader, pytest's conftest and test modules), at any depth (other steps' packages and
  ``util_lib``'s subpackages included), plus every file of the step folder (the files the step
  cache's key digests); also, by absolute path, the file of any loaded module that neither the
  standard library nor an install folder (``site-packages``) holds nor a distribution declares
  (a folder on ``PYTHONPATH``).
  Paths under the root are relative to it, posix, comma-separated. MLflow keeps at most
  8000 characters of a tag's value: a longer list goes on in ``<tag>.2``, ``<tag>.3``, ...
  (:func:`tag_parts`), and a part lost on the way makes the digest check fail, never pass.
- :data:`~util_lib.names.LOADED_DIGEST_TAG`: sha256 over those files' ``path:sha256`` lines
  (:func:`util_lib.artifacts.digests.manifest_digest`), hashed as the run ends.
- :data:`~util_lib.names.PYTHON_TAG`: the interpreter, ``cpython 3.11.7`` (:func:`interpreter`).
- :data:`~util_lib.names.DISTRIBUTIONS_TAG`: ``name==version`` of every installed distribution
  that provides a top-level module the process loaded other than the standard library's and the
  project's (``importlib.metadata``), in parts as the files. A step started by the pipeline's
  fork server also counts what the server loaded for the steps before it (it can only add
  distributions, so at worst a step runs again when it need not).
- :data:`~util_lib.names.INSTALLED_TAG`: a fingerprint of every distribution installed on the
  process's ``sys.path`` (:func:`installed_fingerprint`).

The check (:func:`stale`; rules 4-6 of util_lib/pipeline/cache.py): the run is reused only when

4. it has the record (a run made before the record existed never is);
5. its files, read again now under the step's project root, give the recorded digest (an edited
   or deleted file fails it) -- for a step of a local folder; a step cloned from git at a
   version is pinned by that version, which its key holds;
6. with ``--env-manager local`` (the steps run on the driver's interpreter): the driver's
   interpreter is the recorded one, and each recorded distribution has the recorded version
   now, as ``importlib.metadata`` finds it on the driver's path (when the fingerprint is the
   recorded one, nothing was installed, upgraded or removed since, and the versions are not
   asked one by one). With another environment manager (uv, conda, virtualenv) the step runs
   in the environment that its step folder's pinned ``conda.yml`` gives, which the key covers;
   the driver's interpreter is not the step's, so Python and distributions are not checked.

Cost, measured on the 2-core machine: recording takes a step 13-40 ms (a forked step holding
3,800 modules: 13 ms when the machine is idle); the driver's check of six steps 5-10 ms, 40 ms
when something was installed since (each version is then asked). Which distribution provides
which module (``importlib.metadata.packages_distributions``, 0.35 s) and their versions are
kept in a file of the user's cache (``$UTIL_LIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/util_lib``,
else ``~/.cache/util_lib``), one per interpreter and set of install folders, valid while the
fingerprint stays the same: the first step after an install pays 0.4-0.5 s once. Without a
writable cache every step pays that.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from util_lib.artifacts.digests import (
    CODE_SKIPPED_SUFFIXES,
    file_sha256,
    folder_files,
    left_out,
    manifest_digest,
)
from util_lib.names import (
    DISTRIBUTIONS_TAG,
    INSTALLED_TAG,
    LOADED_DIGEST_TAG,
    LOADED_FILES_TAG,
    PYTHON_TAG,
)
from util_lib.step.distributions import DistributionMap, InstalledNow

logger = logging.getLogger(__name__)

# MLflow's limit on a tag's value (mlflow.utils.validation.MAX_TAG_VAL_LENGTH).
TAG_VALUE_LIMIT = 8000
# Install folders inside a project (a virtual environment kept there) hold no project code.
_INSTALL_FOLDERS = frozenset({"site-packages", "dist-packages"})
# A file in an install folder is a distribution's, even under a top-level name that no
# distribution declares (Cython's shared _cyutility modules of pandas and scipy).
_INSTALLED = re.compile(r"[/\\](site|dist)-packages[/\\]")
_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)
# The standard library's folder (os.py's): what is loaded from there (_sysconfigdata_*) is
# Python's own, but what its site-packages holds.
_STDLIB_FOLDER = os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "")
_DOT = f"{os.sep}."
_STDLIB_SITE = tuple(os.path.join(_STDLIB_FOLDER, name, "") for name in _INSTALL_FOLDERS)


def interpreter() -> str:
    """This interpreter's implementation and version, e.g. ``cpython 3.11.7``."""
    return f"{sys.implementation.name} {platform.python_version()}"


# ---------------------------------------------------------------------------- loaded modules
def _loaded_modules() -> list[tuple[str, str | None]]:
    """(top-level package, absolute file) of every module in ``sys.modules`` but the standard
    library's (file None when it has none: built-in, namespace package). ``__main__`` counts by
    its spec (run by ``python -m pytest`` it belongs to pytest).

    Thousands of modules are loaded: no call per module that a string test can spare.
    """
    found = []
    for key, module in sys.modules.copy().items():  # a copy: other threads may import meanwhile
        # Its __dict__, not getattr: a lazy module's __getattr__ is slow, or raises anything.
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        if key.startswith("__"):
            key = getattr(namespace.get("__spec__"), "name", None) or key
        top = key.partition(".")[0]
        if top in _STDLIB:
            continue
        file = namespace.get("__file__")
        if not isinstance(file, str) or not file:
            found.append((top, None))
            continue
        if not file.startswith(os.sep) or _DOT in file:  # relative, or with ./ or ../ (POSIX)
            file = os.path.abspath(file)
        if not file.startswith(_STDLIB_FOLDER) or file.startswith(_STDLIB_SITE):
            found.append((top, file))
    return found


def _project_relative(file: str, roots: tuple[str, ...]) -> str | None:
    """``file`` (absolute) relative to the project root when it is project code there, else
    None (outside, or in a hidden, generated or install folder). ``roots``: the root as given
    and resolved (a path string is compared before any file system call: thousands of modules
    are loaded)."""
    if not file.startswith(roots):
        return None
    try:
        parts = Path(os.path.realpath(file)).relative_to(roots[-1]).parts
    except ValueError:
        return None
    folders = parts[:-1]
    if any(p in _INSTALL_FOLDERS for p in folders):
        return None
    parents = [os.path.join(roots[-1], *folders[:i]) for i in range(len(folders))]
    if any(left_out(parent, name) for parent, name in zip(parents, folders, strict=True)):
        return None
    return "/".join(parts)


def _roots(root: Path) -> tuple[str, ...]:
    """``root`` as given and resolved, each with a trailing separator; resolved last."""
    given = os.path.join(os.path.abspath(root), "")
    return (given, os.path.join(os.path.realpath(root), ""))


def loaded_files(
    root: Path,
    step_dir: Path | None,
    distributions: Mapping[str, list[str]],
    modules: list[tuple[str, str | None]] | None = None,
) -> dict[str, str]:
    """``{path: sha256}`` of the source files this process loaded (see the module docstring).

    Parameters
    ----------
    root : Path
        The project root: paths under it are recorded relative to it.
    step_dir : Path or None
        The step's folder, all of whose files count (not Markdown, caches or run outputs).
    distributions : mapping
        Top-level module -> the distributions that provide it
        (``importlib.metadata.packages_distributions()``).
    modules : list, optional
        The loaded modules (default: ``sys.modules``'s, now).
    """
    roots = _roots(root)
    paths: dict[str, str] = {}
    if step_dir is not None:
        for name in folder_files(step_dir, skip_suffixes=CODE_SKIPPED_SUFFIXES):
            file = os.path.abspath(step_dir / name)
            paths[_project_relative(file, roots) or os.path.realpath(file)] = file
    for top, file in _loaded_modules() if modules is None else modules:
        if file is None:
            continue
        relative = _project_relative(file, roots)
        if relative is not None:
            paths[relative] = file
        elif top not in distributions and not _INSTALLED.search(file) and os.path.isfile(file):
            paths[os.path.realpath(file)] = file  # nobody's: counted by content where it is
    return {name: file_sha256(file) for name, file in sorted(paths.items())}


def loaded_distributions(
    root: Path,
    provided: Mapping[str, list[str]],
    version: Callable[[str], str | None],
    modules: list[tuple[str, str | None]] | None = None,
) -> dict[str, str]:
    """``{distribution: version}`` of the distributions that provide the top-level modules this
    process loaded, but the standard library's and the project's (under ``root``).

    ``provided``: top-level module -> its distributions; ``version``: a distribution's version
    now (None when it is not installed); ``modules``: as for :func:`loaded_files`.
    """
    roots = _roots(root)
    modules = _loaded_modules() if modules is None else modules
    project = {top for top, file in modules if file and _project_relative(file, roots)}
    used: dict[str, str] = {}
    for top in sorted({top for top, _ in modules} - project):
        for name in provided.get(top, ()):
            found = version(name)
            if found is not None:
                used[name] = found
    return dict(sorted(used.items()))


# ---------------------------------------------------------------------------- tags
def tag_parts(name: str, items: list[str], limit: int = TAG_VALUE_LIMIT) -> dict[str, str]:
    """``items``, comma-joined, as tag ``name`` and, beyond ``limit`` characters, ``name.2``,
    ``name.3``, ... (an item never split)."""
    parts: list[list[str]] = [[]]
    size = 0
    for item in items:
        if parts[-1] and size + 1 + len(item) > limit:
            parts.append([])
            size = 0
        size += len(item) + (1 if parts[-1] else 0)
        parts[-1].append(item)
    return {name if n == 1 else f"{name}.{n}": ",".join(p) for n, p in enumerate(parts, 1)}


def joined_parts(tags: Mapping[str, str], name: str) -> list[str] | None:
    """The items of tag ``name`` and its parts (:func:`tag_parts`); None without the tag."""
    if name not in tags:
        return None
    items = [s for s in tags[name].split(",") if s]
    number = 2
    while f"{name}.{number}" in tags:
        items += [s for s in tags[f"{name}.{number}"].split(",") if s]
        number += 1
    return items


# ---------------------------------------------------------------------------- record, check
def record(root: Path, step_dir: Path | None) -> dict[str, str]:
    """The tags that record what this process loaded (see the module docstring).

    Parameters
    ----------
    root : Path
        The project root (the step folder's parent): paths under it are stored relative to it.
    step_dir : Path or None
        The step's folder (None outside a step: a test, a notebook).
    """
    start, cpu = time.perf_counter(), time.process_time()
    distributions = DistributionMap()
    modules = _loaded_modules()
    files = loaded_files(root, step_dir, distributions.modules, modules)
    used = loaded_distributions(root, distributions.modules, distributions.version, modules)
    distributions.save()
    tags = {
        **tag_parts(LOADED_FILES_TAG, list(files)),
        LOADED_DIGEST_TAG: manifest_digest(files),
        PYTHON_TAG: interpreter(),
        **tag_parts(DISTRIBUTIONS_TAG, [f"{n}=={v}" for n, v in used.items()]),
        INSTALLED_TAG: distributions.fingerprint,
    }
    logger.info(
        "recorded %d source files and %d distributions in %.0f ms (%.0f ms CPU; map of the "
        "installed distributions %s)",
        len(files),
        len(used),
        (time.perf_counter() - start) * 1000,
        (time.process_time() - cpu) * 1000,
        "computed" if distributions.cold else "cached",
    )
    return tags


def _digest_now(root: Path, files: list[str]) -> str:
    """The manifest digest of ``files`` (relative to ``root``, or absolute) as they are now."""
    now = {}
    for name in files:
        path = Path(name) if os.path.isabs(name) else root / name
        try:
            now[name] = file_sha256(path)
        except OSError:
            now[name] = "missing"
    return manifest_digest(now)


def stale(tags: Mapping[str, str], root: Path | None, installed: InstalledNow | None) -> str | None:
    """Why a run's record of what it ran on no longer holds, or None when it does.

    Parameters
    ----------
    tags : mapping
        The run's tags.
    root : Path or None
        The project root the step's files are under now (its folder's parent); None for a step
        cloned from git at a version, whose files are not here (its key holds the version).
    installed : InstalledNow or None
        What the step's interpreter has now (``--env-manager local``: the driver's); None when
        the step runs in an environment of its own, built from its pinned ``conda.yml``.
    """
    files = joined_parts(tags, LOADED_FILES_TAG)
    if files is None or LOADED_DIGEST_TAG not in tags or PYTHON_TAG not in tags:
        return "it has no record of the code and distributions it ran on"
    if root is not None and _digest_now(root, files) != tags[LOADED_DIGEST_TAG]:
        return f"a source file it loaded (one of {len(files)}) changed or is gone"
    if installed is None:
        return None
    if tags[PYTHON_TAG] != interpreter():
        return f"it ran on {tags[PYTHON_TAG]}, the steps now run on {interpreter()}"
    if tags.get(INSTALLED_TAG) == installed.fingerprint:
        return None  # nothing installed, upgraded or removed since
    for item in joined_parts(tags, DISTRIBUTIONS_TAG) or []:
        name, _, version = item.partition("==")
        now = installed.version(name)
        if now != version:
            return f"it ran with {name} {version}, {name} is {now or 'not installed'} now"
    return None
