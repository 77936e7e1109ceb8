"""The interface of an artifact store, its value types and errors, and the rules both stores
apply to names, specs and the notes on a version. It imports no store.

Two stores implement :class:`ArtifactStore`: the embedded store on MLflow's tracking backend
(:class:`util_lib.artifacts.mlflow_store.MlflowArtifactStore`, ``kind`` ``mlflow``) and W&B's
artifacts (:class:`util_lib.artifacts.wandb_store.WandbArtifactStore`, ``kind`` ``wandb``);
:func:`util_lib.artifacts.backends.open_store` is the one place that picks one. Callers
(:class:`util_lib.step.run.Run`, :mod:`util_lib.artifacts.registry`) use only this interface:
what differs between the stores stays inside them, and ``kind`` is data (a tag value, a
command's ``--store``), never a branch. ``tests/util_lib/test_artifact_store_contract.py`` runs
one suite against both.

The contract:

- a spec is ``[project/]name[:ref]``, ``ref`` being ``vN`` (counted from 0), an alias, or
  ``latest`` (the default); with no project, the store's ``project``;
- :meth:`~ArtifactStore.resolve` names the exact version; an unknown artifact, version or alias
  raises :class:`ArtifactNotFoundError` saying what exists;
- :meth:`~ArtifactStore.download` checks every file against the sha256 digests recorded when
  the version was logged (:class:`ArtifactIntegrityError` names each changed, added or missing
  file) and writes into a given ``root`` only when it is new or empty;
- :meth:`~ArtifactStore.check_files` checks the files the store keeps of a version against
  those digests as cheaply as the store allows (the step cache calls it before it reuses a run);
- :meth:`~ArtifactStore.log` adds a version that stays pending until
  :meth:`~ArtifactStore.commit`; :meth:`~ArtifactStore.discard` removes it; content identical
  to a version the store holds returns that version;
- aliases (``set_alias`` moves one; ``latest`` and ``vN`` are the store's), notes on a version
  (``set_version_tags``: check_data's verdict), and the project each store works in;
- the alias ``current`` (:data:`CURRENT_ALIAS`): the versions the last run of the project used
  or wrote. Each version a run logs gets it; the pipeline moves it after each
  step (:func:`mark_current`); a step's default inputs read ``name:current``, which is
  ``name:latest`` while no version has it.

Where the stores differ, each says so in its own docstring (W&B's, against the embedded store:
:mod:`util_lib.artifacts.wandb_store`): when a version becomes visible and gets ``current``,
what ``record_use`` and version notes do, and W&B's refusals while offline.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from util_lib.names import (
    DAMAGED_TAG,
    DIGEST_TAG,
    FILES_TAG,
    KIND_TAG,
    METADATA_TAG,
    NAME_TAG,
    PROJECT_TAG,
    STATE_TAG,
    TYPE_TAG,
    USED_BY_PREFIX,
)

logger = logging.getLogger(__name__)

# The rule of "current": the alias names the versions the last run of the project used or
# wrote. Every version a run logs gets it when the run commits (the embedded store's
# commit, W&B's log); the pipeline (main.py) moves it, after each step, run or reused from the
# step cache, onto the versions the step read and wrote; and a step's input that no earlier
# step of the pipeline wrote, or a step run on its own, reads ``name:current`` (pipeline.yaml's
# inputs, the steps' MLproject defaults). ``latest`` stays the store's (W&B moves it itself):
# it is the newest version, whoever logged it. While no version of an artifact has ``current``
# (a store from before the rule), ``name:current`` reads ``name:latest``.
CURRENT_ALIAS = "current"


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
    (:class:`ArtifactStore`)."""

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


_SPEC = re.compile(r"^(?:(?P<project>[^/:]+)/)?(?P<name>[^/:]+)(?::(?P<ref>[^/:]+))?$")

_VERSION = re.compile(r"^v(\d+)$")


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


def is_alias(ref: str) -> bool:
    """Tell whether the ref of a spec is an alias (``latest`` and ``vN`` are not)."""
    return ref != "latest" and not _VERSION.match(ref)


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


def registry_name(project: str, name: str) -> str:
    """The registered model that holds artifact ``name`` of ``project``: ``<project>.<name>``."""
    return f"{project}.{name}"


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


@runtime_checkable
class ArtifactStore(Protocol):
    """Versioned artifacts of one project (see the module's docstring for the contract)."""

    kind: str  # "mlflow" | "wandb": recorded (tags, commands), never branched on
    project: str  # the project a spec with none refers to, and where the store logs
    tracking_uri: str  # where the store is, for messages

    def resolve(self, spec: str) -> ArtifactVersion:
        """The committed version ``[project/]name[:ref]`` names."""
        ...

    def download(self, version: ArtifactVersion, root: str | Path | None = None) -> Path:
        """The version's files, checked against their digests: the file of a one-file
        artifact, else the folder; ``root`` must be new or empty."""
        ...

    def verify(self, spec: str) -> ArtifactVersion:
        """Check every file of ``spec`` against its digest in a temporary copy."""
        ...

    def check_files(self, version: ArtifactVersion) -> None:
        """Check the files kept of ``version`` against their digests (where they are when the
        store can read them in place); raise
        :class:`ArtifactIntegrityError`
        naming each changed, added or missing file."""
        ...

    def versions(
        self, name: str, include_pending: bool = False, project: str | None = None
    ) -> list[ArtifactVersion]:
        """Versions of ``name`` (oldest first), ``latest`` among the aliases of the newest."""
        ...

    def names(self, project: str | None = None) -> list[str]:
        """The artifacts of ``project`` (default: the store's), sorted."""
        ...

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
        """Add ``path`` as a pending version of ``name`` produced by MLflow run ``run_id``.

        ``uploaded_to``: where these very files already are in MLflow; a store that can use
        that copy records it instead of uploading another, the others ignore it.
        """
        ...

    def commit(self) -> list[str]:
        """Make the pending versions of this store final; return their specs."""
        ...

    def discard(self) -> list[str]:
        """Remove the pending versions of this store (its run failed); return their specs."""
        ...

    def record_use(self, version: ArtifactVersion, run_id: str, step: str) -> None:
        """Note that ``run_id`` (a run of ``step``) used ``version``."""
        ...

    def set_alias(self, spec: str, alias: str) -> ArtifactVersion:
        """Point ``alias`` at the version ``spec`` names, moving it from any other."""
        ...

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Point ``alias`` at ``spec`` only when no version of the artifact has it yet."""
        ...

    def alias_unset(self, spec: str) -> bool:
        """Whether ``spec``'s ref is an alias that no version of its (existing) artifact has."""
        ...

    def set_version_tags(self, version: ArtifactVersion, tags: dict[str, str]) -> None:
        """Record notes on a committed version (``check``, ``check_run_id``)."""
        ...

    def source_of(self, spec: str) -> str:
        """Where the version ``spec`` names (pending ones of this store too) keeps its files."""
        ...


@dataclass(frozen=True)
class UsedArtifact:
    """What :meth:`util_lib.step.run.Run.use_artifact` resolved, and its checked local copy.

    Path-like: ``pd.read_parquet(run.use_artifact("data_train:latest"))`` reads the file.
    """

    version: ArtifactVersion  # the exact version, whatever alias the spec named
    path: Path  # the file of a one-file artifact, else the folder
    spec: str  # as the run records it: ``name:vN``, or ``project/name:vN`` for another project's

    def __fspath__(self) -> str:
        return str(self.path)


def mark_current(store: ArtifactStore, specs: Iterable[str]) -> list[str]:
    """Point the alias ``current`` at each version ``specs`` names; return the versions moved.

    What the pipeline does after each step, run or reused, with the versions the step read and
    wrote (the rule of :data:`CURRENT_ALIAS`). A version that cannot be
    marked is logged as a warning and left: the step's work stands, and a step run alone later reads
    the version ``current`` still names.
    """
    moved = []
    for spec in dict.fromkeys(specs):
        try:
            version = store.resolve(spec)
            if CURRENT_ALIAS not in version.aliases:
                moved.append(store.set_alias(version.qualified_spec, CURRENT_ALIAS).spec)
        except Exception as exc:  # noqa: BLE001 - the alias only guides later runs
            logger.warning("could not make %s %r: %s", spec, CURRENT_ALIAS, exc)
    return moved
