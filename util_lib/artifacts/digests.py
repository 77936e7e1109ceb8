"""Content digests of code and configuration: what a run ran, as sha256 hex strings.

Three users, each covering a different set of files:

- a step run's tags at its start (:class:`util_lib.step.run.Run`): ``util_lib.code_digest``
  (:func:`code_digest`) over its step folder and the whole ``util_lib`` package, and
  ``util_lib.config_digest`` (:func:`params_digest`) over its parameters. ``python -m
  util_lib.artifacts lineage`` shows them for every producing run; they are for people, the
  step cache does not read them;
- the step cache's key (util_lib/pipeline/cache.py, rule 1): the step folder's files
  (:func:`folder_files`, not Markdown: :data:`CODE_SKIPPED_SUFFIXES`) by
  :func:`manifest_digest`;
- a step run's record as it ends (util_lib/step/provenance.py, checked by the step cache before a
  reuse, rules 4-6): :func:`manifest_digest` over ``path:sha256`` (:func:`file_sha256`) of
  every source file the process loaded (the project's, whatever imported it, and the step
  folder's), beside its Python and the versions of the distributions it loaded.

Every sha256 of the project is taken here (files by ``hashlib.file_digest``): a folder's digest
is the artifact store's manifest digest of its files (:func:`manifest_digest`), sha256 over the
sorted ``relative/path:sha256`` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

# This file is util_lib/artifacts/digests.py: the package is two folders up.
UTIL_LIB_DIR = Path(__file__).resolve().parent.parent
# Never code: caches, and what a run may leave in its folder (the .gitignore'd names), unless
# the folder is a Python package (a run leaves no __init__.py; util_lib/artifacts/ is code).
EXCLUDED = frozenset(
    {
        "__pycache__",
        "mlruns",
        "mlartifacts",
        "wandb",
        "artifacts",
        "outputs",
        "multirun",
        "mlflow.db",
        "ml_pipeline.log",
    }
)
SKIPPED_SUFFIXES = (".pyc", ".pyo")
# Documentation changes no result: a README edit keeps a step's code digest.
CODE_SKIPPED_SUFFIXES = (*SKIPPED_SUFFIXES, ".md")


def left_out(parent: str | Path, name: str, exclude: Collection[str] = EXCLUDED) -> bool:
    """Whether the folder ``name`` inside ``parent`` holds no code: hidden, or named in
    ``exclude`` and no Python package."""
    if name.startswith("."):
        return True
    return name in exclude and not os.path.isfile(os.path.join(parent, name, "__init__.py"))


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of one file's bytes (``hashlib.file_digest``)."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def text_sha256(text: str) -> str:
    """The sha256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def json_sha256(value: Any) -> str:
    """The sha256 of ``value`` as JSON with sorted keys (values that JSON lacks as ``str``)."""
    return text_sha256(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")))


def folder_files(
    path: str | Path,
    exclude: Collection[str] = EXCLUDED,
    skip_suffixes: tuple[str, ...] = SKIPPED_SUFFIXES,
) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file below ``path``, in sorted order.

    Hidden files and folders (``.pytest_cache``, ``.ipynb_checkpoints``), files ending in one
    of ``skip_suffixes`` and any file or folder whose name is in ``exclude`` are left out (a
    folder only when it is no Python package: :func:`left_out`).

    Raises
    ------
    NotADirectoryError
        When ``path`` is not a folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot digest {root}: not a folder")
    files: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not left_out(folder, d, exclude))
        for name in names:
            if name in exclude or name.startswith(".") or name.endswith(skip_suffixes):
                continue
            file = Path(folder) / name
            files[file.relative_to(root).as_posix()] = file_sha256(file)
    return dict(sorted(files.items()))


def manifest_digest(files: Mapping[str, str]) -> str:
    """sha256 over the sorted ``path:sha256`` lines of ``files``: a folder's or an artifact
    version's digest, the same wherever the files are and whatever their times."""
    return text_sha256("".join(f"{name}:{files[name]}\n" for name in sorted(files)))


def folder_digest(path: str | Path, exclude: Collection[str] = EXCLUDED) -> str:
    """The digest of a folder's files (see :func:`folder_files` for what is left out).

    Examples
    --------
    >>> folder_digest("preprocess")  # doctest: +SKIP
    '3f1c…'
    """
    return manifest_digest(folder_files(path, exclude))


def code_digest(
    folders: Iterable[str | Path | None], packages: Iterable[str | Path] = (UTIL_LIB_DIR,)
) -> str:
    """The digest of some folders of code together: each file keyed by its folder's name.

    Markdown files do not count (:data:`CODE_SKIPPED_SUFFIXES`), nor what :func:`folder_files`
    leaves out.

    Parameters
    ----------
    folders : iterable of path or None
        The step's own folders (usually one; None entries are skipped).
    packages : iterable of path
        Shared code the step imports; default the ``util_lib`` package in use.

    Raises
    ------
    ValueError
        When two of the folders have the same name (their files would be mixed up).
    """
    files: dict[str, str] = {}
    seen: set[str] = set()
    for folder in [*(f for f in folders if f is not None), *packages]:
        folder = Path(folder).resolve()
        if folder.name in seen:
            raise ValueError(f"two folders named {folder.name!r} in one code digest: {folder}")
        seen.add(folder.name)
        found = folder_files(folder, skip_suffixes=CODE_SKIPPED_SUFFIXES)
        files.update({f"{folder.name}/{k}": v for k, v in found.items()})
    return manifest_digest(files)


def params_digest(params: Mapping[str, Any]) -> str:
    """sha256 of ``params`` as JSON with sorted keys (values that JSON lacks as their ``str``).

    Nested dictionaries count as they are: flatten them first to compare with the flat
    parameters MLflow logs.
    """
    return json_sha256(dict(params))


def running_step_folder() -> Path | None:
    """The folder of the step this process runs, or None when it is not a step.

    A step's folder holds its ``MLproject``: the folder of the script (``python run.py``,
    wherever it is started from), else the working directory (``mlflow run`` starts each step
    there; check_data's script is pytest's). The project root, the pipeline's own MLproject, is
    no step; nor is anything else (a test, a notebook kernel started elsewhere).
    """
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    candidates = [Path(script).resolve().parent] if script else []
    for folder in [*candidates, Path.cwd().resolve()]:
        if (folder / "MLproject").is_file() and folder != UTIL_LIB_DIR.parent:
            return folder
    return None
