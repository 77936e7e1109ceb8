"""The artifact store on W&B, used when W&B is online: the same interface as the embedded store.

W&B keeps versions, ``latest``, aliases, digests, deduplication and lineage itself; this
module adapts it to :class:`util_lib.store.MlflowArtifactStore`'s methods, and deletes the
versions a failed run logged so that a failed step leaves no new version behind. Projects are
W&B's own: a spec with no project is in the run's project (which :class:`util_lib.tracking.Run`
opens as :func:`util_lib.store.default_project`, as the embedded store does), and
``project/name:ref`` is passed to W&B as ``entity/project/name:ref``.

W&B has no tags on an artifact version: notes made after logging (check_data's result,
:meth:`WandbArtifactStore.set_version_tags`) go into the version's metadata through W&B's public
API, best effort (a failure is logged as a warning, and segregate then finds the version
unchecked). This store is used only while W&B is online; the offline copies that an offline W&B
run keeps beside the embedded store carry no check result (``wandb sync`` uploads them as they
were logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from util_lib.store import (
    CHECK_RUN_TAG,
    CHECK_TAG,
    ArtifactNotFoundError,
    ArtifactVersion,
    file_digests,
    is_alias,
    parse_spec,
)

logger = logging.getLogger(__name__)


def _to_version(artifact: Any) -> ArtifactVersion:
    metadata = dict(artifact.metadata or {})
    return ArtifactVersion(
        name=artifact.name.split(":")[0],
        version=int(artifact.version.lstrip("v")),
        type=artifact.type,
        description=artifact.description or "",
        digest=artifact.digest,
        files={},
        metadata=metadata,
        producer_run_id="",
        used_by={},
        aliases=list(artifact.aliases),
        source=artifact.qualified_name,
        project=artifact.project or "",
        check=str(metadata.get(CHECK_TAG, "")),
        check_run_id=str(metadata.get(CHECK_RUN_TAG, "")),
    )


class WandbArtifactStore:
    """Artifacts of the W&B project of ``run`` (a live, online ``wandb`` run)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.project = run.project
        self.tracking_uri = f"wandb:{run.entity}/{run.project}"
        self._artifacts: dict[str, Any] = {}
        self._logged: list[Any] = []

    def _qualified(self, spec: str) -> str:
        project, name, ref = parse_spec(spec)
        return f"{self.run.entity}/{project or self.run.project}/{name}:{ref}"

    def resolve(self, spec: str) -> ArtifactVersion:
        """Resolve a spec through ``run.use_artifact`` (which records the lineage)."""
        import wandb

        try:
            artifact = self.run.use_artifact(self._qualified(spec))
        except (wandb.errors.CommError, ValueError) as exc:
            raise ArtifactNotFoundError(f"W&B artifact {spec!r} not found: {exc}") from exc
        version = _to_version(artifact)
        self._artifacts[version.spec] = artifact
        return version

    def download(self, version: ArtifactVersion, root: str | Path | None = None) -> Path:
        """Download the version's files; return the file of a one-file artifact, else the folder."""
        artifact = self._artifacts.get(version.spec) or self.run.use_artifact(version.source)
        local = Path(artifact.download(root=str(root) if root else None))
        files = [p for p in local.rglob("*") if p.is_file()]
        return files[0] if len(files) == 1 else local

    def record_use(self, version: ArtifactVersion, run_id: str, step: str) -> None:
        """W&B records use in :meth:`resolve` already."""

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

        ``uploaded_to`` (a copy in MLflow) is ignored: a W&B artifact holds its own files.
        """
        import wandb

        path = Path(path)
        artifact = wandb.Artifact(
            name,
            type=type,
            description=description,
            metadata={**(metadata or {}), "sha256": file_digests(path), "mlflow_run_id": run_id},
        )
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact)
        artifact.wait()
        self._logged.append(artifact)
        return _to_version(artifact)

    def commit(self) -> list[str]:
        """W&B commits on upload; report what was logged."""
        specs = [f"{a.name.split(':')[0]}:{a.version}" for a in self._logged]
        self._logged = []
        return specs

    def discard(self) -> list[str]:
        """Delete the versions this run logged (the run failed)."""
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
        import wandb

        artifact = wandb.Api().artifact(self._qualified(spec))
        if alias not in artifact.aliases:
            artifact.aliases.append(alias)
            artifact.save()
        return _to_version(artifact)

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Add ``alias`` to ``spec`` when no version of that artifact has it yet."""
        import wandb

        project, name, _ = parse_spec(spec)
        try:
            wandb.Api().artifact(self._qualified(f"{project or self.project}/{name}:{alias}"))
            return False
        except wandb.errors.CommError:
            self.set_alias(spec, alias)
            return True

    def set_version_tags(self, version: ArtifactVersion, tags: dict[str, str]) -> None:
        """Best effort: write ``tags`` into the version's metadata (W&B has no version tags)."""
        import wandb

        try:
            artifact = wandb.Api().artifact(version.source)
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
        api = wandb.Api()
        try:
            api.artifact(self._qualified(f"{project or self.project}/{name}:latest"))
        except wandb.errors.CommError:
            return False  # no such artifact
        try:
            api.artifact(self._qualified(spec))
        except wandb.errors.CommError:
            return True
        return False
