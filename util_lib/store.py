"""The embedded artifact store, kept on MLflow's tracking backend.

It gives W&B's artifact semantics to anyone with no W&B account, wherever
``MLFLOW_TRACKING_URI`` points (the local SQLite file by default, a team's server otherwise):

- every artifact belongs to a project, as in W&B: the ``project`` the store is given, else the
  W&B project of the pipeline (``WANDB_PROJECT``, which ``main.py`` sets from
  ``main.project_name``), else config.yaml's ``main.project_name``. A store sees and moves only
  its project's versions; ``project/name:ref`` reads another project's, as W&B allows;
- an artifact is a registered model of MLflow's Model Registry named ``<project>.<name>``,
  tagged ``util_lib.kind=artifact``, ``util_lib.project``, ``util_lib.name`` and
  ``util_lib.note`` ("pipeline artifact, not a model"), and described as what it is
  (:func:`artifact_description`), since the UI's Models page lists it; the tags are the
  truth (MLflow forbids '/' and ':' in registered-model names, so ``project/name`` cannot be the
  name itself; '.' keeps it readable in the MLflow UI, and the tags tell ``a.b`` + ``c`` from
  ``a`` + ``b.c``). Each of its versions is a registry version (``vN`` is registry version N+1,
  since W&B counts from 0), so the backend's own transaction hands out version numbers and two
  processes logging the same name at once get two distinct versions;
- the files are uploaded to the producing run's artifacts, under
  ``util_lib_artifacts/<project>/<name>/<digest>/``, and the version's ``source`` points there;
- the version's tags hold its type, metadata, per-file sha256 digests, state and the runs that
  used it; ``run_id`` is the run that produced it; aliases are registry aliases, and ``latest``
  is always the newest committed version;
- notes made later go to tags of the version too: check_data records the result of its last
  check there (``util_lib.check`` = passed | failed, ``util_lib.check_run`` = the check's run)
  through :meth:`MlflowArtifactStore.set_version_tags`;
- a version is created ``pending`` and becomes visible only when its run commits, so a step
  that fails (or is killed) leaves no new version; ``discard`` deletes the pending versions;
- content identical to a committed version (same digest) makes no new version, unless that
  version's files no longer match their digests: it is then tagged damaged
  (``util_lib.damaged``, naming each changed, added or missing file) and never handed out by
  the dedupe again, and a new, sound version is logged (:meth:`MlflowArtifactStore.check_files`
  checks a version's files, on a local artifact location where they are, without a copy);
- the alias ``current`` follows the rule of :data:`CURRENT_ALIAS`: every version a run logs
  gets it when the run commits, and ``name:current`` reads ``latest`` while no version of
  ``name`` has it yet.

It implements :class:`util_lib.artifact_store.ArtifactStore`, as the W&B store does; the helpers
both stores share (spec parsing, name and alias checks, checked downloads) live here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.arguments import PROJECT_ROOT
from util_lib.environment import PROJECT_ENV

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

KIND_TAG = "util_lib.kind"
TYPE_TAG = "util_lib.type"
STATE_TAG = "util_lib.state"
DIGEST_TAG = "util_lib.digest"
FILES_TAG = "util_lib.files"
METADATA_TAG = "util_lib.metadata"
PROJECT_TAG = "util_lib.project"
NAME_TAG = "util_lib.name"
# On an artifact's registered model, for whoever reads the registry page or its tags.
NOTE_TAG = "util_lib.note"
ARTIFACT_NOTE = "pipeline artifact, not a model"
# The last data check of a version (check_data records it): passed | failed, and its run.
CHECK_TAG = "util_lib.check"
CHECK_RUN_TAG = "util_lib.check_run"
USED_BY_PREFIX = "util_lib.used_by."
# Set when a version's files were found not to match their digests: what is wrong with them.
DAMAGED_TAG = "util_lib.damaged"
# The rule of "current": the alias names the versions the last run of the project used or
# wrote. Every version a run logs gets it when the run commits (the embedded store's
# commit, W&B's log); the pipeline (main.py) moves it, after each step, run or reused from the
# step cache, onto the versions the step read and wrote; and a step's input that no earlier
# step of the pipeline wrote, or a step run on its own, reads ``name:current`` (pipeline.yaml's
# inputs, the steps' MLproject defaults). ``latest`` stays the store's (W&B moves it itself):
# it is the newest version, whoever logged it. While no version of an artifact has ``current``
# (a store from before the rule), ``name:current`` reads ``name:latest``.
CURRENT_ALIAS = "current"
FILES_PREFIX = "util_lib_artifacts"
# The source of a version whose files are an MLflow logged model's: models:/<model id>.
LOGGED_MODEL_URI = "models:/"
# Written by MLflow into a model folder it loads from a models:/ URI in place; not ours.
MLFLOW_BOOKKEEPING_FILE = "registered_model_meta"

_SPEC = re.compile(r"^(?:(?P<project>[^/:]+)/)?(?P<name>[^/:]+)(?::(?P<ref>[^/:]+))?$")
_VERSION = re.compile(r"^v(\d+)$")
# An alias: '/' and ':' would break the specs; quotes and backslashes the registry's filter
# strings.
_PROJECT = re.compile(r"^[^/:'\"\\]+$")
# The one rule for the names of projects (W&B projects, MLflow experiments), artifacts and
# registered models, which both stores and config.yaml's check apply (:func:`name_problem`).
# W&B 0.31 refuses more than 128 characters and / \ # ? % : and line breaks in a project name
# (its URLs), '/' in an artifact name; MLflow 3.17 refuses '/' and ':' in a registered model
# name (the embedded store's is <project>.<name>), '%' in a file store's, and a name that a
# path would resolve elsewhere (a leading '..'); an experiment's artifacts are kept in
# mlruns/<name>; quotes break the registry's filter strings.
NAME_MAXLEN = 128
NAME_RULE = (
    f"1 to {NAME_MAXLEN} characters, none of / \\ # ? % : ' \" nor '..', "
    "no control characters or surrounding spaces"
)
_NAME_FORBIDDEN = "/\\#?%:'\""


class ArtifactIntegrityError(OSError):
    """An artifact's files differ from the sha256 digests recorded when it was logged.

    ``problems`` maps ``changed``, ``added`` and ``missing`` to the files concerned (only the
    kinds found).
    """

    def __init__(self, message: str, problems: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[str, list[str]] = problems or {}


class ArtifactNotFoundError(LookupError):
    """An artifact, version or alias that the store does not hold."""


@dataclass
class ArtifactVersion:
    """One committed (or pending) version of an artifact, as every store returns it
    (:class:`util_lib.artifact_store.ArtifactStore`)."""

    name: str
    version: int
    type: str
    description: str
    digest: str
    files: dict[str, str]
    metadata: dict[str, Any]
    producer_run_id: str
    used_by: dict[str, str]
    aliases: list[str] = field(default_factory=list)
    source: str = ""
    state: str = "committed"
    created_ms: int = 0
    project: str = ""
    check: str = ""  # its last data check: passed | failed; "" when never checked
    check_run_id: str = ""  # the run of that check
    damaged: str = ""  # what a check of its files found wrong ("changed: a.parquet"); "" if none

    @property
    def spec(self) -> str:
        """The name and version, ``name:vN`` (what a run of the same project refers to)."""
        return f"{self.name}:v{self.version}"

    @property
    def qualified_spec(self) -> str:
        """The spec with its project, ``project/name:vN``, valid from any project."""
        return f"{self.project}/{self.spec}" if self.project else self.spec

    @property
    def registry_version(self) -> str:
        """The registry version number behind ``vN``."""
        return str(self.version + 1)

    @property
    def registry_name(self) -> str:
        """The registered model that holds this version."""
        return registry_name(self.project, self.name)


def parse_spec(spec: str) -> tuple[str | None, str, str]:
    """Split ``[project/]name[:version_or_alias]`` into its parts (``latest`` when omitted).

    Raises
    ------
    ValueError
        When ``spec`` is not of that form.
    """
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"artifact {spec!r} is not of the form [project/]name[:version_or_alias]")
    return match["project"], match["name"], match["ref"] or "latest"


def name_problem(name: object) -> str | None:
    """What keeps ``name`` from naming a project, an artifact or a registered model in MLflow
    and W&B (:data:`NAME_RULE`), e.g. ``"has '/'"``; None when nothing does."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if name != name.strip():
        return "has surrounding spaces"
    if len(name) > NAME_MAXLEN:
        return f"is {len(name)} characters long"
    faults = [f"has {c!r}" for c in _NAME_FORBIDDEN if c in name]
    if ".." in name or name == ".":
        faults.append("has '..'" if ".." in name else "is '.'")
    if not name.isprintable():
        faults.append("has a control character")
    return ", ".join(faults) or None


def check_project(project: str) -> str:
    """Return ``project`` when it can name a project of the store.

    Raises
    ------
    ValueError
        When it breaks the rule of names (:func:`name_problem`).
    """
    if problem := name_problem(project):
        raise ValueError(
            f"artifact project {project!r} is not a valid project name ({problem}): "
            f"it must have {NAME_RULE}"
        )
    return project


def registry_name(project: str, name: str) -> str:
    """The registered model that holds artifact ``name`` of ``project``: ``<project>.<name>``."""
    return f"{project}.{name}"


def artifact_description(project: str, name: str, type: str) -> str:
    """The description of the registered model that holds artifact ``name`` of ``project``:
    what it is, so that the registry page does not pass it off as a model."""
    what = (
        "the versions of an exported model as the pipeline's steps read them (its files are "
        "the training run's MLflow logged model; the model to deploy is the registered model "
        "that main.registered_model_name names)"
        if type == "model_export"
        else "versioned data of the embedded artifact store, not a model"
    )
    return (
        f"Pipeline artifact {project}/{name} (type {type}): {what}. Version vN of the "
        f"artifact is registry version N+1; its aliases are the artifact's. Read it with "
        f"`python -m util_lib.artifacts list --project {project}` (README, 'Artifacts')."
    )


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


def file_digests(path: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` for a file or every file below a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot log artifact: {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path.parent if path.is_file() else path
    digests = {}
    for file in files:
        with file.open("rb") as stream:
            digests[file.relative_to(base).as_posix()] = hashlib.file_digest(
                stream, "sha256"
            ).hexdigest()
    return digests


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


def _is_logged_model(source: str) -> bool:
    """Tell whether ``source`` names an MLflow logged model's files (``models:/m-...``)."""
    return source.startswith(LOGGED_MODEL_URI) and "/" not in source[len(LOGGED_MODEL_URI) :]


def _is_local_uri(uri: str) -> bool:
    """Tell whether ``uri`` is a path on this machine (MLflow then uses the files in place)."""
    return uri.startswith("file:") or "://" not in uri and ":/" not in uri


def manifest_digest(files: dict[str, str]) -> str:
    """Digest of a whole artifact: sha256 over its sorted ``path:sha256`` lines."""
    lines = "".join(f"{name}:{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def is_alias(ref: str) -> bool:
    """Tell whether the ref of a spec is an alias (``latest`` and ``vN`` are not)."""
    return ref != "latest" and not _VERSION.match(ref)


def check_alias(alias: str) -> str:
    """Return ``alias`` when a user may set it.

    Raises
    ------
    ValueError
        When it is ``latest`` or ``vN`` (the store sets those), or not a bare name.
    """
    if not isinstance(alias, str) or alias != alias.strip() or not _PROJECT.match(alias):
        raise ValueError(f"alias {alias!r} must be a bare name (none of / : ' \" \\)")
    if alias == "latest" or _VERSION.match(alias):
        raise ValueError(f"alias {alias!r} is reserved: 'latest' and 'vN' are set by the store")
    return alias


def check_name(name: str, project: str) -> str:
    """Return ``name`` when a run of ``project`` may log an artifact under it.

    Raises
    ------
    ValueError
        When it breaks the rule of names (:func:`name_problem`), e.g. names a project or a
        version (a run logs into its own).
    """
    if problem := name_problem(name):
        raise ValueError(
            f"artifact name {name!r} must be a bare name ({problem}; no project/, no :version, "
            f"{NAME_RULE}): a run logs into its own project ({project!r})"
        )
    return name


# Tags the store keeps itself: notes made later (set_version_tags) cannot overwrite them.
_OWN_TAGS = frozenset(
    {
        KIND_TAG,
        TYPE_TAG,
        STATE_TAG,
        DIGEST_TAG,
        FILES_TAG,
        METADATA_TAG,
        PROJECT_TAG,
        NAME_TAG,
        DAMAGED_TAG,
    }
)


def check_version_tags(version: ArtifactVersion, tags: dict[str, str]) -> None:
    """Refuse notes on a version that a store may not take (both stores apply this rule).

    Raises
    ------
    ValueError
        When a key is the store's own (type, state, digests, files, metadata, project, name,
        damage, users), or ``version`` is not committed.
    """
    refused = sorted(k for k in tags if k in _OWN_TAGS or k.startswith(USED_BY_PREFIX))
    if refused:
        raise ValueError(f"tags {refused} are the artifact store's own and cannot be set")
    if version.state != "committed":
        raise ValueError(f"{version.qualified_spec} is not committed: cannot tag it")


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


class MlflowArtifactStore:
    """Versioned artifacts of one project on the MLflow tracking backend at ``tracking_uri``.

    An :class:`util_lib.artifact_store.ArtifactStore`.

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI; default: MLflow's own (``MLFLOW_TRACKING_URI`` or ``./mlflow.db``).
    project : str, optional
        The project whose artifacts the store lists, logs and aliases; default:
        :func:`default_project` (``$WANDB_PROJECT``, else config.yaml's ``main.project_name``).
        ``project/name:ref`` still reads another project's version.
    wandb_copy : wandb run, optional
        An offline W&B run that gets a copy of each version logged, so that ``wandb sync``
        uploads it with the run (what a step does while W&B is offline).
    """

    kind = "mlflow"

    def __init__(
        self, tracking_uri: str | None = None, project: str | None = None, wandb_copy: Any = None
    ) -> None:
        from mlflow import MlflowClient

        self.project = check_project(project) if project else default_project()
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        self.wandb_copy = wandb_copy
        self._pending: list[ArtifactVersion] = []
        # Committed versions that a log of identical content handed back: current at commit.
        self._reused: list[ArtifactVersion] = []

    # ----------------------------------------------------------------- reading
    def names(self, project: str | None = None) -> list[str]:
        """Names of the artifacts of ``project`` (default: the store's) that have a committed
        version, sorted (one whose every version was discarded is not listed)."""
        project = check_project(project) if project else self.project
        query = f"tags.`{KIND_TAG}` = 'artifact' and tags.`{PROJECT_TAG}` = '{project}'"
        models = self._search_models(query)
        if not models:
            return []
        # One query for the project's committed versions ('_' and '%' of LIKE match a superset).
        query = f"name LIKE '{registry_name(project, '')}%' and tags.`{STATE_TAG}` = 'committed'"
        found = self.client.search_model_versions(query, max_results=10000)
        committed = {mv.name for mv in found}
        while token := getattr(found, "token", None):
            found = self.client.search_model_versions(query, max_results=10000, page_token=token)
            committed |= {mv.name for mv in found}
        return sorted(m.tags[NAME_TAG] for m in models if m.name in committed)

    def projects(self) -> list[str]:
        """The projects that hold artifacts in this store, sorted."""
        models = self._search_models(f"tags.`{KIND_TAG}` = 'artifact'")
        return sorted({m.tags[PROJECT_TAG] for m in models if PROJECT_TAG in m.tags})

    def versions(
        self, name: str, include_pending: bool = False, project: str | None = None
    ) -> list[ArtifactVersion]:
        """Versions of ``name`` in ``project`` (default: the store's), oldest first.

        Committed versions only, unless ``include_pending``.
        """
        project = check_project(project) if project else self.project
        model = self._registered(project, name)
        if model is None:
            return []
        found = self.client.search_model_versions(f"name='{model.name}'", max_results=10000)
        versions = [self._to_version(mv, project, name) for mv in found]
        # Search results carry no aliases; the registered model maps each alias to a version.
        for version in versions:
            version.aliases = [
                a for a, v in model.aliases.items() if str(v) == version.registry_version
            ]
        if not include_pending:
            versions = [v for v in versions if v.state == "committed"]
        versions.sort(key=lambda v: v.version)
        for version in versions:
            version.aliases.sort()
        committed = [v for v in versions if v.state == "committed"]
        if committed:
            committed[-1].aliases.insert(0, "latest")
        return versions

    def resolve(self, spec: str) -> ArtifactVersion:
        """Find the committed version that ``[project/]name:version_or_alias`` names.

        With no project, the store's own project. ``name:current`` is ``name:latest`` while no
        version of ``name`` has the alias (:data:`CURRENT_ALIAS`).

        Raises
        ------
        ArtifactNotFoundError
            With the artifacts (of that project), versions and aliases that do exist.
        """
        project, name, ref = parse_spec(spec)
        project = check_project(project) if project else self.project
        versions = self.versions(name, project=project)
        if not versions:
            raise ArtifactNotFoundError(self.not_found_message(project, name))
        for version in versions:
            if ref in version.aliases or ref == f"v{version.version}":
                return version
        if ref == CURRENT_ALIAS:
            logger.info("%s: no version is %r yet; reading the latest", name, CURRENT_ALIAS)
            return versions[-1]
        listing = ", ".join(
            f"v{v.version}" + (f" [{', '.join(v.aliases)}]" if v.aliases else "") for v in versions
        )
        what = "version" if _VERSION.match(ref) else "alias"
        raise ArtifactNotFoundError(
            f"{what} {ref!r} of artifact {name!r} not found in project {project!r} of the store "
            f"at {self.tracking_uri} (versions: {listing})"
        )

    def download(self, version: ArtifactVersion, root: str | Path | None = None) -> Path:
        """Make the files of ``version`` local and return the file (one-file artifact) or folder.

        Every copy is checked against the recorded sha256 digests: a changed, added or missing
        file raises :class:`ArtifactIntegrityError` naming it.

        With no ``root``, a store on the local disk hands back its own copy (read-only by
        convention) and a remote one is downloaded to a temporary folder, removed again when
        the check fails. With ``root``, the files go there: ``root`` must be a new or empty
        folder (nothing the user keeps there is touched), and when the check fails everything
        written there is removed again.

        Raises
        ------
        FileExistsError
            When ``root`` holds anything already.
        ArtifactIntegrityError
            When the files differ from their recorded digests.
        """
        import mlflow.artifacts

        uri = self.files_uri(version)

        def fetch(folder: Path | None) -> Path:
            return Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(folder) if folder else None
                )
            )

        # A remote source is copied to a temporary folder of ours; a local one is used in place.
        return checked_download(version, root, fetch, temporary=not _is_local_uri(uri))

    def files_uri(self, version: ArtifactVersion) -> str:
        """Where the files of ``version`` are: its source, or for a logged model's files
        (``models:/<id>``) that model's artifact location (read directly: MLflow's models:/
        reader writes its own bookkeeping file into a local model)."""
        if _is_logged_model(version.source):
            model_id = version.source.removeprefix(LOGGED_MODEL_URI)
            return self.client.get_logged_model(model_id).artifact_location
        return version.source

    def verify(self, spec: str) -> ArtifactVersion:
        """Download ``spec`` to a temporary folder and check every file against its digest.

        Raises
        ------
        ArtifactIntegrityError
            Naming each changed, added or missing file.
        """
        return verify_spec(self, spec)

    def check_files(self, version: ArtifactVersion) -> None:
        """Check the files the store keeps of ``version`` against their recorded digests.

        On a local artifact location (a file path or ``file:`` URI) the files are hashed
        where they are, without a copy; elsewhere (a tracking server's artifacts) they are
        downloaded to a temporary folder first. The verdict is recorded on the version: a
        damaged one gets the tag ``util_lib.damaged`` (what is wrong), which a later check that
        finds the files sound again (restored) removes.

        Raises
        ------
        ArtifactIntegrityError
            Naming each changed, added or missing file (``.problems`` lists them).
        """
        try:
            uri = self.files_uri(version)
            if _is_local_uri(uri):
                from mlflow.utils.file_utils import local_file_uri_to_path

                verify_files(version, Path(local_file_uri_to_path(uri)))
            else:
                with tempfile.TemporaryDirectory(prefix="check-") as tmp:
                    self.download(version, Path(tmp) / "files")
        except ArtifactIntegrityError as exc:
            damage = describe_problems(exc.problems)
            if damage != version.damaged:
                self._set_tag(version, DAMAGED_TAG, damage)
                version.damaged = damage
            raise
        if version.damaged:  # its files were put back
            self.client.delete_model_version_tag(
                version.registry_name, version.registry_version, DAMAGED_TAG
            )
            version.damaged = ""

    # ----------------------------------------------------------------- writing
    def log(
        self,
        path: str | Path,
        name: str,
        type: str,
        description: str,
        metadata: dict[str, Any] | None,
        run_id: str,
        uploaded_to: str | None = None,
    ) -> ArtifactVersion:
        """Add ``path`` (a file or folder) as a pending version of ``name`` produced by ``run_id``.

        The version belongs to the store's project (a run logs into its own project, as in
        W&B). Content identical to a committed version of ``name`` (or to one this store logged
        already) returns that version and creates nothing, once its files are checked
        (:meth:`check_files`): a version whose files are damaged is passed over (and tagged
        so), and a new version is logged instead.

        ``uploaded_to``: the URI where these very files already are (e.g. an MLflow logged
        model's artifact location). Nothing is uploaded: the version's source is that one copy,
        and its digests, computed from ``path``, cover it.
        """
        check_name(name, self.project)
        files = file_digests(Path(path))
        digest = manifest_digest(files)
        if self.wandb_copy is not None:
            self._copy_to_wandb(Path(path), name, type, description, metadata)
        model_name = self._ensure_registered(name, type)
        for existing in self._pending + self.versions(name):
            if existing.name == name and existing.digest == digest and self._sound(existing):
                logger.info("%s: content identical to %s, no new version", name, existing.spec)
                if existing.state == "committed" and existing not in self._reused:
                    self._reused.append(existing)
                return existing
        if uploaded_to:
            source = uploaded_to
        else:
            artifact_path = f"{FILES_PREFIX}/{self.project}/{name}/{digest[:16]}"
            path = Path(path)
            if path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
            else:
                self.client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
            source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        tags = {
            STATE_TAG: "pending",
            TYPE_TAG: type,
            DIGEST_TAG: digest,
            FILES_TAG: json.dumps(files, sort_keys=True),
            METADATA_TAG: json.dumps(metadata or {}, sort_keys=True, default=str),
        }
        mv = self.client.create_model_version(
            model_name,
            source=source,
            run_id=run_id,
            tags=tags,
            description=description,
            # A logged model's files (models:/<id>): the server checks the source against it.
            model_id=source.removeprefix(LOGGED_MODEL_URI) if _is_logged_model(source) else None,
        )
        version = self._to_version(mv, self.project, name)
        self._pending.append(version)
        logger.info(
            "%s: staged %s (%d files, sha256 %s)", name, version.qualified_spec, len(files), digest
        )
        return version

    def commit(self) -> list[str]:
        """Make the pending versions of this store visible; return their specs.

        Every version this store logged, new or handed back for identical content, becomes
        ``current`` (:data:`CURRENT_ALIAS`).
        """
        committed = []
        for version in self._pending:
            self._set_tag(version, STATE_TAG, "committed")
            version.state = "committed"
            committed.append(version.spec)
        for version in self._pending + self._reused:
            try:
                self._point(CURRENT_ALIAS, version)
            except Exception as exc:  # the version stands; only a later default read differs
                logger.warning("could not make %s %r: %s", version.spec, CURRENT_ALIAS, exc)
        self._pending, self._reused = [], []
        return committed

    def discard(self) -> list[str]:
        """Delete the pending versions of this store (after a failure); return their specs."""
        discarded = []
        for version in self._pending:
            try:
                self.client.delete_model_version(version.registry_name, version.registry_version)
                discarded.append(version.spec)
            except Exception:  # keep discarding the others; a pending version stays invisible
                logger.exception("could not delete pending version %s", version.spec)
        self._pending, self._reused = [], []
        return discarded

    def record_use(self, version: ArtifactVersion, run_id: str, step: str) -> None:
        """Note on ``version`` that ``run_id`` (a run of ``step``) used it (its ``used_by``)."""
        self.client.set_model_version_tag(
            version.registry_name, version.registry_version, USED_BY_PREFIX + run_id, step
        )

    def set_alias(self, spec: str, alias: str) -> ArtifactVersion:
        """Point ``alias`` at the version ``spec`` names (moving it from any other version).

        Only versions of the artifact of ``spec``'s project (default: the store's) move.
        """
        check_alias(alias)
        version = self._resolve_including_own_pending(spec)
        self._point(alias, version)
        logger.info("alias %r now points at %s", alias, version.qualified_spec)
        return version

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Point ``alias`` at ``spec`` only when no version of that artifact has it yet."""
        check_alias(alias)
        project, name, _ = parse_spec(spec)
        model = self._registered(check_project(project) if project else self.project, name)
        if model is not None and alias in model.aliases:
            return False
        self.set_alias(spec, alias)
        return True

    def set_version_tags(self, version: ArtifactVersion, tags: dict[str, str]) -> None:
        """Set ``tags`` on a committed version, overwriting earlier values of the same keys.

        For notes made about a version after it was logged (check_data's result). The keys the
        store keeps itself (type, state, digests, files, metadata, project, name, users) are
        refused.
        """
        check_version_tags(version, tags)
        for key, value in tags.items():
            self.client.set_model_version_tag(
                version.registry_name, version.registry_version, key, str(value)
            )

    def alias_unset(self, spec: str) -> bool:
        """Tell whether ``spec`` names an alias that no version of its artifact has yet.

        False for ``latest``, ``vN``, and an artifact with no committed version (a typo'd name
        is not an alias waiting to be set).
        """
        project, name, ref = parse_spec(spec)
        if not is_alias(ref):
            return False
        versions = self.versions(name, project=check_project(project) if project else None)
        return bool(versions) and not any(ref in v.aliases for v in versions)

    def source_of(self, spec: str) -> str:
        """Where the version ``spec`` names keeps its files (its ``source`` URI).

        Also for a version this store logged and has not committed yet.

        Raises
        ------
        ArtifactNotFoundError
            When ``spec`` names no version.
        """
        return self._resolve_including_own_pending(spec).source

    # ----------------------------------------------------------------- helpers
    def _set_tag(self, version: ArtifactVersion, key: str, value: str) -> None:
        self.client.set_model_version_tag(
            version.registry_name, version.registry_version, key, value
        )

    def _point(self, alias: str, version: ArtifactVersion) -> None:
        """Set ``alias`` on ``version``; once more if the first try fails (two processes that
        create the same alias at once: the registry's read-then-insert lets one of them fail)."""
        try:
            self.client.set_registered_model_alias(
                version.registry_name, alias, version.registry_version
            )
        except Exception:  # noqa: BLE001 - the second try raises what is wrong
            self.client.set_registered_model_alias(
                version.registry_name, alias, version.registry_version
            )

    def _sound(self, version: ArtifactVersion) -> bool:
        """Whether identical content may be handed ``version`` instead of a new version: one
        this store logged and has not committed (its files were just uploaded), or a
        committed one whose files pass :meth:`check_files`."""
        if version.state != "committed":
            return True
        if version.damaged:
            logger.warning(
                "%s: content identical to %s, which is damaged (%s): logging a new version",
                version.name,
                version.spec,
                version.damaged,
            )
            return False
        try:
            self.check_files(version)
        except ArtifactIntegrityError as exc:
            logger.warning("%s; logging a new version", exc)
            return False
        except Exception as exc:  # unknown state: a new version is safe, a damaged one is not
            logger.warning(
                "could not check the files of %s (%s): logging a new version", version.spec, exc
            )
            return False
        return True

    def _copy_to_wandb(
        self, path: Path, name: str, type: str, description: str, metadata: dict[str, Any] | None
    ) -> None:
        import wandb

        artifact = wandb.Artifact(name, type=type, description=description, metadata=metadata)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.wandb_copy.log_artifact(artifact)

    def not_found_message(self, project: str, name: str) -> str:
        """Why ``project/name`` is not found: the project's artifacts, or the store's projects."""
        where = f"the store at {self.tracking_uri}"
        known = self.names(project)
        if known:
            return (
                f"artifact {name!r} not found in project {project!r} of {where} "
                f"(artifacts of {project!r}: {', '.join(known)})"
            )
        return (
            f"artifact {name!r} not found: project {project!r} has no artifacts in {where} "
            f"(projects there: {', '.join(self.projects()) or 'none'})"
        )

    def _search_models(self, query: str) -> list[Any]:
        models = self.client.search_registered_models(filter_string=query, max_results=1000)
        found = list(models)
        while token := getattr(models, "token", None):
            models = self.client.search_registered_models(
                filter_string=query, max_results=1000, page_token=token
            )
            found += list(models)
        return found

    def _resolve_including_own_pending(self, spec: str) -> ArtifactVersion:
        project, name, ref = parse_spec(spec)
        project = project or self.project
        for version in self._pending:
            if (version.project, version.name) == (project, name) and ref == f"v{version.version}":
                return version
        return self.resolve(spec)

    def _registered(self, project: str, name: str) -> Any:
        """The registered model of artifact ``name`` of ``project``, or None when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(registry_name(project, name))
        except MlflowException:
            return None
        tags = model.tags
        if tags.get(KIND_TAG) != "artifact" or (tags.get(PROJECT_TAG), tags.get(NAME_TAG)) != (
            project,
            name,
        ):
            return None
        return model

    def _ensure_registered(self, name: str, type: str) -> str:
        """Create the registered model of artifact ``name`` unless it exists; return its name.

        It says what it is, on the registry page and in searches: its description
        (:func:`artifact_description`) and tags (``util_lib.kind=artifact``, ``util_lib.note``).
        One created before descriptions gets them the first time it is logged to.
        """
        from mlflow.exceptions import MlflowException

        model_name = registry_name(self.project, name)
        description = artifact_description(self.project, name, type)
        try:
            model = self.client.get_registered_model(model_name)
        except MlflowException:
            # In this order: the registry page lists a model's first three tags.
            tags = {
                KIND_TAG: "artifact",
                NOTE_TAG: ARTIFACT_NOTE,
                TYPE_TAG: type,
                PROJECT_TAG: self.project,
                NAME_TAG: name,
            }
            try:
                self.client.create_registered_model(model_name, tags=tags, description=description)
            except MlflowException as exc:  # created meanwhile by a concurrent writer
                if "already exists" not in str(exc).lower():
                    raise
            return model_name
        tags = model.tags
        if tags.get(KIND_TAG) != "artifact":
            raise ValueError(
                f"{model_name!r} is a registered model that the artifact store does not manage; "
                f"choose another name for artifact {name!r} of project {self.project!r}"
            )
        if (tags.get(PROJECT_TAG), tags.get(NAME_TAG)) != (self.project, name):
            owner = f"{tags.get(PROJECT_TAG)}/{tags.get(NAME_TAG)}"
            raise ValueError(
                f"registered model {model_name!r} holds artifact {owner!r}, not "
                f"{self.project}/{name}: choose another artifact or project name"
            )
        if not model.description:  # made before artifacts said what they are
            self.client.update_registered_model(model_name, description=description)
            self.client.set_registered_model_tag(model_name, NOTE_TAG, ARTIFACT_NOTE)
        return model_name

    @staticmethod
    def _to_version(mv: ModelVersion, project: str, name: str) -> ArtifactVersion:
        tags = mv.tags or {}
        return ArtifactVersion(
            name=name,
            version=int(mv.version) - 1,
            type=tags.get(TYPE_TAG, ""),
            description=mv.description or "",
            digest=tags.get(DIGEST_TAG, ""),
            files=json.loads(tags.get(FILES_TAG, "{}")),
            metadata=json.loads(tags.get(METADATA_TAG, "{}")),
            producer_run_id=mv.run_id or "",
            used_by={
                k[len(USED_BY_PREFIX) :]: v for k, v in tags.items() if k.startswith(USED_BY_PREFIX)
            },
            aliases=[],
            source=mv.source,
            state=tags.get(STATE_TAG, "pending"),
            created_ms=mv.creation_timestamp or 0,
            project=project,
            check=tags.get(CHECK_TAG, ""),
            check_run_id=tags.get(CHECK_RUN_TAG, ""),
            damaged=tags.get(DAMAGED_TAG, ""),
        )
