"""The artifact store on W&B, used when W&B is online: an
:class:`util_lib.artifacts.interface.ArtifactStore`, as the embedded store is.

W&B keeps versions, ``latest``, aliases, digests, deduplication and lineage itself; this
module adapts it to the interface, and deletes the versions a failed run logged so that a
failed step leaves no new version behind. Projects are W&B's own: a spec with no project is in
the store's project (the run's, which :class:`util_lib.step.run.Run` opens as
:func:`util_lib.artifacts.backends.default_project`, as the embedded store does), and
``project/name:ref`` is passed to W&B as ``entity/project/name:ref``.

Given a W&B run, the store resolves through ``run.use_artifact`` (W&B records the use: its
:meth:`~WandbArtifactStore.record_use` does nothing) and logs into the run's project; with no
run (``python -m util_lib.artifacts alias --store wandb``) it reads and moves aliases through
W&B's public API. The reading side is :mod:`util_lib.artifacts.wandb_reader`'s.

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
- ``current`` (:data:`~util_lib.artifacts.interface.CURRENT_ALIAS`) is given to a version when
  it is logged (W&B moves it from the others, as it moves ``latest``), not when the run commits; the
  versions a failed run logged are deleted with their aliases.

W&B offline refuses everything but logging a file into the run (``use_artifact``,
``Artifact.wait``, the public API); the store then raises
:class:`~util_lib.artifacts.wandb_reader.WandbUnavailableError` with W&B's own words. The offline
copies that an offline W&B run keeps beside the embedded store carry no check result (``wandb
sync`` uploads them as they were logged).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from util_lib.artifacts.files import file_digests
from util_lib.artifacts.interface import (
    CURRENT_ALIAS,
    ArtifactVersion,
    check_alias,
    check_name,
    check_version_tags,
    parse_spec,
)
from util_lib.artifacts.wandb_reader import (
    DIGESTS_KEY,
    PRODUCER_KEY,
    WandbArtifactReader,
    online,
    to_version,
)

logger = logging.getLogger(__name__)


class WandbArtifactStore(WandbArtifactReader):
    """Artifacts of a W&B project.

    Parameters
    ----------
    run : wandb run, optional
        The step's (online) W&B run: the store resolves and logs through it, in its project.
    project : str, optional
        With no run, the project; default :func:`util_lib.artifacts.backends.default_project`.
    entity : str, optional
        W&B entity; default the run's, else ``$WANDB_ENTITY``, else W&B's default entity.
    """

    kind = "wandb"

    def __init__(
        self, run: Any = None, project: str | None = None, entity: str | None = None
    ) -> None:
        super().__init__(run, project, entity)
        self._logged: list[Any] = []  # logged by this store, not committed yet

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
        The version becomes ``current`` (:data:`util_lib.artifacts.interface.CURRENT_ALIAS`).

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
        with online(f"log {name}"):
            # W&B adds (and moves) "latest" itself.
            self.run.log_artifact(artifact, aliases=[CURRENT_ALIAS])
            artifact.wait()
        self._logged.append(artifact)
        return to_version(artifact)

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
        with online(f"set alias {alias!r} on {spec}"):
            artifact = api.artifact(self._qualified(spec))
            if alias not in artifact.aliases:
                artifact.aliases.append(alias)
                artifact.save()
        return to_version(artifact)

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Add ``alias`` to ``spec`` when no version of that artifact has it yet."""
        import wandb

        check_alias(alias)
        project, name, _ = parse_spec(spec)
        api = self._api()
        with online(f"look up {name}:{alias}"):
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
            with online(f"tag {version.qualified_spec}"):
                artifact = self._api().artifact(version.source)
                artifact.metadata = {**(artifact.metadata or {}), **tags}
                artifact.save()
        except Exception as exc:  # a note left out reads as "never checked": safe
            logger.warning("could not record %s on W&B artifact %s: %s", tags, version.source, exc)
