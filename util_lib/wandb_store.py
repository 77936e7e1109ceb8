"""The artifact store on W&B, used when W&B is online: an
:class:`util_lib.artifact_store.ArtifactStore`, as the embedded store is.

W&B keeps versions, ``latest``, aliases, digests, deduplication and lineage itself; this
module adapts it to the interface, and deletes the versions a failed run logged so that a
failed step leaves no new version behind. Projects are W&B's own: a spec with no project is in
the store's project (the run's, which :class:`util_lib.tracking.Run` opens as
:func:`util_lib.store.default_project`, as the embedded store does), and ``project/name:ref``
is passed to W&B as ``entity/project/name:ref``.

Given a W&B run, the store resolves through ``run.use_artifact`` (W&B records the use: its
:meth:`~WandbArtifactStore.record_use` does nothing) and logs into the run's project; with no
run (``python -m util_lib.artifacts alias --store wandb``) it reads and moves aliases through
W&B's public API.

Where it differs from the embedded store:

- W&B numbers a version only when it commits it, and :meth:`~WandbArtifactStore.log` must
  return ``name:vN``: the version is visible from upload on, and ``discard`` deletes it;
- W&B has no tags on a version: notes made after logging (check_data's result,
  :meth:`~WandbArtifactStore.set_version_tags`) go into the version's metadata, best effort (a
  failure is logged as a warning, and segregate then finds the version unchecked);
- the files' sha256 digests are the metadata's ``sha256`` (set by :meth:`log`); downloads are
  checked against them, or by W&B's own manifest when a version was logged without them;
  :meth:`~WandbArtifactStore.check_files` downloads a version (through W&B's cache) to check
  it, and records nothing on it; W&B's own deduplication hands back the version it holds for
  identical content (its files are in W&B's storage, out of this machine's reach);
- ``current`` (:data:`util_lib.store.CURRENT_ALIAS`) is given to a version when it is logged
  (W&B moves it from the others, as it moves ``latest``), not when the run commits; the
  versions a failed run logged are deleted with their aliases.

W&B offline refuses everything but logging a file into the run (``use_artifact``,
``Artifact.wait``, the public API); the store then raises :class:`WandbUnavailableError` with
W&B's own words. The offline copies that an offline W&B run keeps beside the embedded store
carry no check result (``wandb sync`` uploads them as they were logged).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from util_lib.store import (
    CHECK_RUN_TAG,
    CHECK_TAG,
    CURRENT_ALIAS,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactVersion,
    check_alias,
    check_name,
    check_project,
    check_version_tags,
    checked_download,
    default_project,
    file_digests,
    is_alias,
    parse_spec,
    verify_files,
    verify_spec,
)

logger = logging.getLogger(__name__)

DIGESTS_KEY = "sha256"  # metadata key of the files' digests
PRODUCER_KEY = "mlflow_run_id"  # metadata key of the MLflow run that logged the version
_OWN_KEYS = (DIGESTS_KEY, PRODUCER_KEY, CHECK_TAG, CHECK_RUN_TAG)


class WandbUnavailableError(RuntimeError):
    """W&B refused an operation that needs it online (offline mode, no API key)."""


@contextmanager
def _online(what: str) -> Iterator[None]:
    """Turn W&B's refusals of an offline (or logged-out) process into one clear error."""
    import wandb
    from wandb.sdk.artifacts.exceptions import ArtifactNotLoggedError

    try:
        yield
    except (ArtifactNotLoggedError, wandb.errors.UsageError) as exc:
        raise WandbUnavailableError(f"W&B cannot {what} here: {exc}") from exc
    except TypeError as exc:
        if "offline" not in str(exc):  # use_artifact's refusal; any other TypeError is a bug
            raise
        raise WandbUnavailableError(f"W&B cannot {what} here: {exc}") from exc


def _to_version(artifact: Any) -> ArtifactVersion:
    metadata = dict(artifact.metadata or {})
    digests = metadata.get(DIGESTS_KEY)
    return ArtifactVersion(
        name=artifact.name.split(":")[0],
        version=int(artifact.version.lstrip("v")),
        type=artifact.type,
        description=artifact.description or "",
        digest=artifact.digest,
        files=dict(digests) if isinstance(digests, dict) else {},
        metadata={k: v for k, v in metadata.items() if k not in _OWN_KEYS},
        producer_run_id=str(metadata.get(PRODUCER_KEY, "")),
        used_by={},  # W&B lists a version's users on its page
        aliases=sorted(artifact.aliases, key=lambda a: (a != "latest", a)),
        source=artifact.qualified_name,
        project=artifact.project or "",
        check=str(metadata.get(CHECK_TAG, "")),
        check_run_id=str(metadata.get(CHECK_RUN_TAG, "")),
    )


class WandbArtifactStore:
    """Artifacts of a W&B project.

    Parameters
    ----------
    run : wandb run, optional
        The step's (online) W&B run: the store resolves and logs through it, in its project.
    project : str, optional
        With no run, the project; default :func:`util_lib.store.default_project`.
    entity : str, optional
        W&B entity; default the run's, else ``$WANDB_ENTITY``, else W&B's default entity.
    """

    kind = "wandb"

    def __init__(
        self, run: Any = None, project: str | None = None, entity: str | None = None
    ) -> None:
        self.run = run
        if run is not None:
            self.project = check_project(run.project)
        else:
            self.project = check_project(project) if project else default_project()
        own_entity = run.entity if run is not None else os.environ.get("WANDB_ENTITY")
        self.entity = entity or own_entity or None
        where = f"{self.entity}/{self.project}" if self.entity else self.project
        self.tracking_uri = f"wandb:{where}"
        self._artifacts: dict[str, Any] = {}  # resolved, by qualified spec
        self._logged: list[Any] = []  # logged by this store, not committed yet

    # ----------------------------------------------------------------- reading
    def _path(self, project: str | None) -> str:
        project = check_project(project) if project else self.project
        return f"{self.entity}/{project}" if self.entity else project

    def _qualified(self, spec: str) -> str:
        project, name, ref = parse_spec(spec)
        return f"{self._path(project)}/{name}:{ref}"

    def _api(self) -> Any:
        import wandb

        with _online("reach its public API"):
            return wandb.Api()

    def resolve(self, spec: str) -> ArtifactVersion:
        """The version ``spec`` names; through the run (which records the use) when there is one.

        ``name:current`` is ``name:latest`` while no version of ``name`` has the alias
        (:data:`util_lib.store.CURRENT_ALIAS`).

        Raises
        ------
        ArtifactNotFoundError
            With W&B's reason and the project's artifacts.
        WandbUnavailableError
            When W&B is offline or not logged in.
        """
        import wandb

        project, name, ref = parse_spec(spec)
        qualified = self._qualified(spec)
        candidates = [qualified]
        if ref == CURRENT_ALIAS:
            candidates.append(self._qualified(f"{project}/{name}" if project else name))
        error: Exception | None = None
        for candidate in candidates:
            try:
                with _online(f"resolve {spec}"):
                    if self.run is not None:
                        artifact = self.run.use_artifact(candidate)
                    else:
                        artifact = self._api().artifact(candidate)
                break
            except (wandb.errors.CommError, ValueError) as exc:
                error = error or exc
        else:
            raise ArtifactNotFoundError(
                f"W&B artifact {qualified!r} not found: {error} "
                f"(artifacts of {project or self.project!r}: {self._listing(project)})"
            ) from error
        version = _to_version(artifact)
        self._artifacts[version.qualified_spec] = artifact
        return version

    def _listing(self, project: str | None) -> str:
        try:
            return ", ".join(self.names(project)) or "none"
        except Exception:  # the listing only helps the message
            return "unknown"

    def _artifact(self, version: ArtifactVersion) -> Any:
        found = self._artifacts.get(version.qualified_spec)
        if found is None:
            with _online(f"fetch {version.qualified_spec}"):
                if self.run is not None:
                    found = self.run.use_artifact(version.source)
                else:
                    found = self._api().artifact(version.source)
        return found

    def download(self, version: ArtifactVersion, root: str | Path | None = None) -> Path:
        """The version's files, checked: the file of a one-file artifact, else the folder.

        Checked against the sha256 digests recorded at logging, or W&B's own manifest for a
        version logged without them. ``root`` must be a new or empty folder.

        Raises
        ------
        FileExistsError
            When ``root`` holds anything already.
        ArtifactIntegrityError
            When the files differ from their recorded digests.
        """
        artifact = self._artifact(version)

        def fetch(folder: Path | None) -> Path:
            with _online(f"download {version.qualified_spec}"):
                return Path(artifact.download(root=str(folder) if folder else None))

        def by_manifest(version: ArtifactVersion, local: Path) -> None:
            try:
                artifact.verify(root=str(local))
            except ValueError as exc:
                raise ArtifactIntegrityError(f"{version.qualified_spec}: {exc}") from exc

        check = verify_files if version.files else by_manifest
        return checked_download(version, root, fetch, check)

    def verify(self, spec: str) -> ArtifactVersion:
        """Download ``spec`` to a temporary folder and check every file against its digest."""
        return verify_spec(self, spec)

    def check_files(self, version: ArtifactVersion) -> None:
        """Check ``version``'s files against their digests in a temporary download.

        W&B keeps the files in its own storage: the copy checked is the one a download gets
        (through W&B's local cache). Nothing is recorded on the version.

        Raises
        ------
        ArtifactIntegrityError
            Naming each changed, added or missing file.
        """
        with tempfile.TemporaryDirectory(prefix="check-") as tmp:
            self.download(version, Path(tmp) / "files")

    def names(self, project: str | None = None) -> list[str]:
        """The artifacts of ``project`` (default: the store's), every type, sorted."""
        api = self._api()
        with _online("list artifacts"):
            types = api.artifact_types(project=self._path(project))
            return sorted({c.name for t in types for c in t.collections()})

    def versions(
        self, name: str, include_pending: bool = False, project: str | None = None
    ) -> list[ArtifactVersion]:
        """Versions of ``name`` in ``project`` (default: the store's), oldest first.

        W&B lists committed versions only: ``include_pending`` changes nothing.
        """
        import wandb

        api = self._api()
        collection = f"{self._path(project)}/{name}"
        with _online(f"list the versions of {collection}"):
            try:
                newest = api.artifact(f"{collection}:latest")
            except wandb.errors.CommError:
                return []
            found = [_to_version(a) for a in api.artifacts(newest.type, collection)]
        return sorted(found, key=lambda v: v.version)

    def source_of(self, spec: str) -> str:
        """``entity/project/name:vN``: where W&B keeps the version (logged by this store too)."""
        for artifact in self._logged:
            if f"{artifact.name.split(':')[0]}:{artifact.version}" == spec:
                return artifact.qualified_name
        return self._qualified(spec)

    # ----------------------------------------------------------------- writing
    def record_use(self, version: ArtifactVersion, run_id: str, step: str) -> None:
        """Nothing: W&B records the run's use when :meth:`resolve` goes through the run."""

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
        """Log ``path`` as a version of ``name`` and wait until W&B has committed it.

        The files' sha256 digests and ``run_id`` go into the metadata (``sha256``,
        ``mlflow_run_id``). ``uploaded_to`` (a copy in MLflow) is ignored: a W&B artifact
        holds its own files. W&B returns the version it has when the content is identical.
        The version becomes ``current`` (:data:`util_lib.store.CURRENT_ALIAS`).

        Raises
        ------
        WandbUnavailableError
            When W&B is offline: it takes the files but numbers no version.
        """
        import wandb

        check_name(name, self.project)
        if self.run is None:
            raise ValueError(f"cannot log {name!r}: the W&B store logs through a W&B run")
        path = Path(path)
        own = {DIGESTS_KEY: file_digests(path), PRODUCER_KEY: run_id}
        artifact = wandb.Artifact(
            name, type=type, description=description, metadata={**(metadata or {}), **own}
        )
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        with _online(f"log {name}"):
            # W&B adds (and moves) "latest" itself.
            self.run.log_artifact(artifact, aliases=[CURRENT_ALIAS])
            artifact.wait()
        self._logged.append(artifact)
        return _to_version(artifact)

    def commit(self) -> list[str]:
        """W&B commits on upload; report what was logged."""
        specs = [f"{a.name.split(':')[0]}:{a.version}" for a in self._logged]
        self._logged = []
        return specs

    def discard(self) -> list[str]:
        """Delete the versions this store logged (its run failed)."""
        discarded = []
        for artifact in self._logged:
            try:
                artifact.delete(delete_aliases=True)
                discarded.append(artifact.qualified_name)
            except Exception:
                logger.exception("could not delete %s", artifact.qualified_name)
        self._logged = []
        return discarded

    def set_alias(self, spec: str, alias: str) -> ArtifactVersion:
        """Add ``alias`` to the version ``spec`` names (W&B moves it from the others)."""
        check_alias(alias)
        api = self._api()
        with _online(f"set alias {alias!r} on {spec}"):
            artifact = api.artifact(self._qualified(spec))
            if alias not in artifact.aliases:
                artifact.aliases.append(alias)
                artifact.save()
        return _to_version(artifact)

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Add ``alias`` to ``spec`` when no version of that artifact has it yet."""
        import wandb

        check_alias(alias)
        project, name, _ = parse_spec(spec)
        api = self._api()
        with _online(f"look up {name}:{alias}"):
            try:
                api.artifact(self._qualified(f"{project or self.project}/{name}:{alias}"))
                return False
            except wandb.errors.CommError:
                pass  # no version has it
        self.set_alias(spec, alias)
        return True

    def set_version_tags(self, version: ArtifactVersion, tags: dict[str, str]) -> None:
        """Best effort: write ``tags`` into the version's metadata (W&B has no version tags).

        Raises
        ------
        ValueError
            When a key is the store's own or ``version`` is not committed (nothing is written).
        """
        check_version_tags(version, tags)
        try:
            with _online(f"tag {version.qualified_spec}"):
                artifact = self._api().artifact(version.source)
                artifact.metadata = {**(artifact.metadata or {}), **tags}
                artifact.save()
        except Exception as exc:  # a note left out reads as "never checked": safe
            logger.warning("could not record %s on W&B artifact %s: %s", tags, version.source, exc)

    def alias_unset(self, spec: str) -> bool:
        """Tell whether ``spec`` names an alias that no version of its (existing) artifact has."""
        import wandb

        project, name, ref = parse_spec(spec)
        if not is_alias(ref):
            return False
        api = self._api()
        with _online(f"look up {spec}"):
            try:
                api.artifact(self._qualified(f"{project or self.project}/{name}:latest"))
            except wandb.errors.CommError:
                return False  # no such artifact
            try:
                api.artifact(self._qualified(spec))
            except wandb.errors.CommError:
                return True
        return False
