"""The files of an artifact version: their sha256 digests, and downloads checked against them.

Both stores apply these (:mod:`util_lib.artifacts.mlflow_store`,
:mod:`util_lib.artifacts.wandb_store`): a version records the sha256 of each of its files when
it is logged, and every download is checked against them before anyone reads it
(:func:`checked_download`), naming each changed, added or missing file
(:class:`~util_lib.artifacts.interface.ArtifactIntegrityError`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from util_lib.artifacts.digests import file_sha256
from util_lib.artifacts.interface import ArtifactIntegrityError, ArtifactVersion

# Written by MLflow into a model folder it loads from a models:/ URI in place; not ours.
MLFLOW_BOOKKEEPING_FILE = "registered_model_meta"


def file_digests(path: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` for a file or every file below a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot log artifact: {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path.parent if path.is_file() else path
    return {file.relative_to(base).as_posix(): file_sha256(file) for file in files}


def compare_files(expected: dict[str, str], found: dict[str, str]) -> dict[str, list[str]]:
    """What differs between two ``{path: sha256}`` maps: ``changed``, ``added`` and
    ``missing`` files (only the kinds found; empty when they are the same)."""
    problems = {
        "changed": sorted(k for k in expected if k in found and found[k] != expected[k]),
        "added": sorted(set(found) - set(expected)),
        "missing": sorted(set(expected) - set(found)),
    }
    return {what: names for what, names in problems.items() if names}


def describe_problems(problems: dict[str, list[str]]) -> str:
    """``changed: a.parquet; missing: b.txt``: what :func:`compare_files` found, in words."""
    return "; ".join(f"{what}: {', '.join(names)}" for what, names in problems.items())


def verify_files(version: ArtifactVersion, local: Path) -> None:
    """Check that ``local`` holds exactly the files of ``version``, each with its sha256.

    MLflow's own ``registered_model_meta`` (the registry name and version that ``mlflow models
    serve/predict -m models:/...`` write into a model folder they use in place) is not one of
    the artifact's files and is left out. A ``local`` that does not exist holds no file (every
    file is missing).

    Raises
    ------
    ArtifactIntegrityError
        Naming every changed, added and missing file.
    """
    found = file_digests(local) if Path(local).exists() else {}
    found.pop(MLFLOW_BOOKKEEPING_FILE, None)
    problems = compare_files(version.files, found)
    if problems:
        raise ArtifactIntegrityError(
            f"{version.qualified_spec}: the files at {local} differ from their recorded sha256 "
            f"digests ({describe_problems(problems)}); refusing to use them",
            problems,
        )


def _entry(version: ArtifactVersion, local: Path) -> Path:
    """The file of a one-file artifact, else the folder: what a download hands back."""
    if len(version.files) == 1:
        return local / next(iter(version.files))
    if not version.files:  # digests not recorded (a W&B version logged elsewhere)
        files = [p for p in local.rglob("*") if p.is_file()]
        return files[0] if len(files) == 1 else local
    return local


def checked_download(
    version: ArtifactVersion,
    root: str | Path | None,
    fetch: Callable[[Path | None], Path],
    check: Callable[[ArtifactVersion, Path], None] = verify_files,
    temporary: bool = False,
) -> Path:
    """Fetch ``version``'s files, check them, and return the file (one-file artifact) or folder.

    Parameters
    ----------
    version : ArtifactVersion
        The version whose files are fetched.
    root : str or pathlib.Path, optional
        A new or empty folder to put the files in; None: wherever ``fetch`` puts them.
    fetch : callable
        ``fetch(folder)`` writes the files under ``folder`` (None: its own place) and returns
        the folder that holds them.
    check : callable
        ``check(version, folder)`` raises :class:`ArtifactIntegrityError` when they differ.
    temporary : bool
        Whether ``fetch(None)`` makes a copy of its own, removed again when the check fails.

    Raises
    ------
    FileExistsError
        When ``root`` holds anything already (nothing the user keeps there is touched).
    ArtifactIntegrityError
        When the files differ from their recorded digests; whatever this call wrote into
        ``root`` is removed again.
    """
    if root is None:
        local = fetch(None)
        try:
            check(version, local)
        except ArtifactIntegrityError:
            if temporary:
                shutil.rmtree(local, ignore_errors=True)
            raise
        return _entry(version, local)
    local = Path(root)
    if local.exists() and (not local.is_dir() or any(local.iterdir())):
        raise FileExistsError(
            f"{local} is not an empty folder: {version.spec} is written only into a new "
            "or empty folder, never beside files it did not write"
        )
    created = not local.exists()
    local.mkdir(parents=True, exist_ok=True)
    try:
        # Fetched beside, checked, then moved in (MLflow names its copy after the source folder).
        with tempfile.TemporaryDirectory(prefix=".download-", dir=local) as staging:
            copy = fetch(Path(staging))
            check(version, copy)
            for item in list(copy.iterdir()):
                shutil.move(str(item), local / item.name)
    except BaseException:
        # ``local`` was empty: whatever is in it now, this call wrote.
        for item in local.iterdir():
            shutil.rmtree(item) if item.is_dir() else item.unlink()
        if created:
            local.rmdir()
        raise
    return _entry(version, local)


def verify_spec(store: Any, spec: str) -> ArtifactVersion:
    """Resolve ``spec`` in ``store``, download it to a temporary folder and check every file.

    Raises
    ------
    ArtifactIntegrityError
        Naming each changed, added or missing file.
    """
    version = store.resolve(spec)
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        store.download(version, Path(tmp) / "files")
    return version
