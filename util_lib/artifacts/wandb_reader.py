"""The reading side of the W&B artifact store (:mod:`util_lib.artifacts.wandb_store`):
resolving, listing, downloading and checking W&B artifact versions, each as the interface's
:class:`~util_lib.artifacts.interface.ArtifactVersion`, and W&B's refusals of an offline or
logged-out process as one error (:class:`WandbUnavailableError`).

:class:`WandbArtifactReader` is the base of
:class:`~util_lib.artifacts.wandb_store.WandbArtifactStore`, which adds the writing side (log,
commit, discard, aliases, notes); the module docstring of ``wandb_store`` says how W&B differs
from the embedded store.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from util_lib.artifacts.backends import default_project
from util_lib.artifacts.files import checked_download, verify_files, verify_spec
from util_lib.artifacts.interface import (
    CURRENT_ALIAS,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactVersion,
    check_project,
    is_alias,
    parse_spec,
)
from util_lib.names import CHECK_RUN_TAG, CHECK_TAG

DIGESTS_KEY = "sha256"  # metadata key of the files' digests

PRODUCER_KEY = "mlflow_run_id"  # metadata key of the MLflow run that logged the version

_OWN_KEYS = (DIGESTS_KEY, PRODUCER_KEY, CHECK_TAG, CHECK_RUN_TAG)


class WandbUnavailableError(RuntimeError):
    """W&B refused an operation that needs it online (offline mode, no API key)."""


@contextmanager
def online(what: str) -> Iterator[None]:
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


def to_version(artifact: Any) -> ArtifactVersion:
    """A W&B artifact version as the interface's :class:`ArtifactVersion` (the digests and the
    producing run from its metadata, check_data's notes too)."""
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


class WandbArtifactReader:
    """Artifacts of a W&B project, read only
    (:class:`~util_lib.artifacts.wandb_store.WandbArtifactStore` also writes).

    Parameters
    ----------
    run : wandb run, optional
        The step's (online) W&B run: the store resolves through it, in its project.
    project : str, optional
        With no run, the project; default :func:`util_lib.artifacts.backends.default_project`.
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

    # ----------------------------------------------------------------- reading
    def _path(self, project: str | None) -> str:
        project = check_project(project) if project else self.project
        return f"{self.entity}/{project}" if self.entity else project

    def _qualified(self, spec: str) -> str:
        project, name, ref = parse_spec(spec)
        return f"{self._path(project)}/{name}:{ref}"

    def _api(self) -> Any:
        import wandb

        with online("reach its public API"):
            return wandb.Api()

    def resolve(self, spec: str) -> ArtifactVersion:
        """The version ``spec`` names; through the run (which records the use) when there is one.

        ``name:current`` is ``name:latest`` while no version of ``name`` has the alias
        (:data:`util_lib.artifacts.interface.CURRENT_ALIAS`).

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
                with online(f"resolve {spec}"):
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
        version = to_version(artifact)
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
            with online(f"fetch {version.qualified_spec}"):
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
            with online(f"download {version.qualified_spec}"):
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
        with online("list artifacts"):
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
        with online(f"list the versions of {collection}"):
            try:
                newest = api.artifact(f"{collection}:latest")
            except wandb.errors.CommError:
                return []
            found = [to_version(a) for a in api.artifacts(newest.type, collection)]
        return sorted(found, key=lambda v: v.version)

    def alias_unset(self, spec: str) -> bool:
        """Tell whether ``spec`` names an alias that no version of its (existing) artifact has."""
        import wandb

        project, name, ref = parse_spec(spec)
        if not is_alias(ref):
            return False
        api = self._api()
        with online(f"look up {spec}"):
            try:
                api.artifact(self._qualified(f"{project or self.project}/{name}:latest"))
            except wandb.errors.CommError:
                return False  # no such artifact
            try:
                api.artifact(self._qualified(spec))
            except wandb.errors.CommError:
                return True
        return False
