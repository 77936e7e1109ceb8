"""The interface of an artifact store, what a run gets back when it uses an artifact, and the
one place that picks a store.

Two stores implement :class:`ArtifactStore`: the embedded store on MLflow's tracking backend
(:class:`util_lib.store.MlflowArtifactStore`, ``kind`` ``mlflow``) and W&B's artifacts
(:class:`util_lib.wandb_store.WandbArtifactStore`, ``kind`` ``wandb``). Callers
(:class:`util_lib.tracking.Run`, :mod:`util_lib.registry`) use only this interface: what
differs between the stores stays inside them, and ``kind`` is data (a tag value, a command's
``--store``), never a branch. ``tests/util_lib/test_artifact_store_contract.py`` runs one suite
against both.

The contract:

- a spec is ``[project/]name[:ref]``, ``ref`` being ``vN`` (counted from 0), an alias, or
  ``latest`` (the default); with no project, the store's ``project``;
- :meth:`~ArtifactStore.resolve` names the exact version; an unknown artifact, version or alias
  raises :class:`util_lib.store.ArtifactNotFoundError` saying what exists;
- :meth:`~ArtifactStore.download` checks every file against the sha256 digests recorded when
  the version was logged (:class:`util_lib.store.ArtifactIntegrityError` names each changed,
  added or missing file) and writes into a given ``root`` only when it is new or empty;
- :meth:`~ArtifactStore.check_files` checks the files the store keeps of a version against
  those digests as cheaply as the store allows (the step cache calls it before it reuses a run);
- :meth:`~ArtifactStore.log` adds a version that stays pending until
  :meth:`~ArtifactStore.commit`; :meth:`~ArtifactStore.discard` removes it; content identical
  to a version the store holds returns that version;
- aliases (``set_alias`` moves one; ``latest`` and ``vN`` are the store's), notes on a version
  (``set_version_tags``: check_data's verdict), and the project each store works in;
- the alias ``current`` (:data:`util_lib.store.CURRENT_ALIAS`): the versions the last run of
  the project used or wrote. Each version a run logs gets it; the pipeline moves it after each
  step (:func:`mark_current`); a step's default inputs read ``name:current``, which is
  ``name:latest`` while no version has it.

Where the stores differ (each says so in its own docstring): the embedded store hides a
pending version from every reader until commit, while W&B numbers a version only when it
commits it, so the W&B store's versions are visible from upload on and ``discard`` deletes
them; W&B records a run's use of a version when it resolves it (``record_use`` does nothing);
W&B has no version tags (notes go into the version's metadata, best effort), so only the
embedded store records a damaged version (and its dedupe then passes it over; W&B's own
dedupe hands back what its storage holds); W&B gives ``current`` at upload, the embedded store
at commit. W&B needs to be online for everything but logging; offline it refuses, and the
store says so (:class:`util_lib.wandb_store.WandbUnavailableError`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from util_lib.store import CURRENT_ALIAS, ArtifactVersion

logger = logging.getLogger(__name__)


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
        store can read them in place); raise :class:`util_lib.store.ArtifactIntegrityError`
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
    """What :meth:`util_lib.tracking.Run.use_artifact` resolved, and its checked local copy.

    Path-like: ``pd.read_parquet(run.use_artifact("data_train:latest"))`` reads the file.
    """

    version: ArtifactVersion  # the exact version, whatever alias the spec named
    path: Path  # the file of a one-file artifact, else the folder
    spec: str  # as the run records it: ``name:vN``, or ``project/name:vN`` for another project's

    def __fspath__(self) -> str:
        return str(self.path)


def _embedded(project: str | None, wandb_run: Any, tracking_uri: str | None) -> ArtifactStore:
    from util_lib.store import MlflowArtifactStore

    # An offline W&B run gets a copy of each version, which `wandb sync` uploads with it.
    offline = wandb_run is not None and bool(getattr(wandb_run, "offline", False))
    return MlflowArtifactStore(tracking_uri, project, wandb_copy=wandb_run if offline else None)


def _wandb(project: str | None, wandb_run: Any, tracking_uri: str | None) -> ArtifactStore:
    from util_lib.wandb_store import WandbArtifactStore

    return WandbArtifactStore(wandb_run, project=project)


_STORES: dict[str, Callable[[str | None, Any, str | None], ArtifactStore]] = {
    "mlflow": _embedded,
    "wandb": _wandb,
}


def open_store(
    kind: str,
    project: str | None = None,
    wandb_run: Any = None,
    tracking_uri: str | None = None,
) -> ArtifactStore:
    """The artifact store of ``kind`` (what :func:`util_lib.backends.choose_backends` picked).

    Parameters
    ----------
    kind : {"mlflow", "wandb"}
        The embedded store, or W&B's artifacts.
    project : str, optional
        The store's project; default: the W&B run's, else
        :func:`util_lib.store.default_project`.
    wandb_run : wandb run, optional
        The step's W&B run: W&B's store resolves and logs through it (recording lineage);
        the embedded store gives an offline one a copy of each version it logs.
    tracking_uri : str, optional
        The embedded store's MLflow tracking URI; default MLflow's own.

    Raises
    ------
    ValueError
        When ``kind`` names no store.
    """
    try:
        factory = _STORES[kind]
    except KeyError:
        raise ValueError(f"artifact store {kind!r} is not one of {', '.join(_STORES)}") from None
    return factory(project, wandb_run, tracking_uri)


def mark_current(store: ArtifactStore, specs: Iterable[str]) -> list[str]:
    """Point the alias ``current`` at each version ``specs`` names; return the versions moved.

    What the pipeline does after each step, run or reused, with the versions the step read and
    wrote (the rule of :data:`util_lib.store.CURRENT_ALIAS`). A version that cannot be marked
    is logged as a warning and left: the step's work stands, and a step run alone later reads
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
