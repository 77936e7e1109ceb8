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

It implements :class:`util_lib.artifacts.interface.ArtifactStore`, as the W&B store does; its
reading side is :mod:`util_lib.artifacts.mlflow_reader`'s. What both stores share lives beside
them: spec parsing, names and aliases (:mod:`~util_lib.artifacts.interface`), checked downloads
(:mod:`~util_lib.artifacts.files`), the default project (:mod:`~util_lib.artifacts.backends`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from util_lib.artifacts.digests import manifest_digest
from util_lib.artifacts.files import file_digests
from util_lib.artifacts.interface import (
    CURRENT_ALIAS,
    ArtifactIntegrityError,
    ArtifactVersion,
    check_alias,
    check_name,
    check_project,
    check_version_tags,
    parse_spec,
    registry_name,
)
from util_lib.artifacts.mlflow_reader import (
    FILES_PREFIX,
    LOGGED_MODEL_URI,
    MlflowArtifactReader,
    is_logged_model,
)
from util_lib.names import (
    ARTIFACT_NOTE,
    DIGEST_TAG,
    FILES_TAG,
    KIND_TAG,
    METADATA_TAG,
    NAME_TAG,
    NOTE_TAG,
    PROJECT_TAG,
    STATE_TAG,
    TYPE_TAG,
    USED_BY_PREFIX,
)

logger = logging.getLogger(__name__)


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


class MlflowArtifactStore(MlflowArtifactReader):
    """Versioned artifacts of one project on the MLflow tracking backend at ``tracking_uri``:
    an :class:`~util_lib.artifacts.interface.ArtifactStore`. The reading side is
    :class:`~util_lib.artifacts.mlflow_reader.MlflowArtifactReader`'s.

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI; default: MLflow's own (``MLFLOW_TRACKING_URI`` or ``./mlflow.db``).
    project : str, optional
        The project whose artifacts the store lists, logs and aliases; default:
        :func:`~util_lib.artifacts.backends.default_project` (``$WANDB_PROJECT``, else
        config.yaml's ``main.project_name``). ``project/name:ref`` still reads another
        project's version.
    wandb_copy : wandb run, optional
        An offline W&B run that gets a copy of each version logged, so that ``wandb sync``
        uploads it with the run (what a step does while W&B is offline).
    """

    def __init__(
        self, tracking_uri: str | None = None, project: str | None = None, wandb_copy: Any = None
    ) -> None:
        super().__init__(tracking_uri, project)
        self.wandb_copy = wandb_copy
        self._pending: list[ArtifactVersion] = []
        # Committed versions that a log of identical content handed back: current at commit.
        self._reused: list[ArtifactVersion] = []

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
            model_id=source.removeprefix(LOGGED_MODEL_URI) if is_logged_model(source) else None,
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

    def source_of(self, spec: str) -> str:
        """Where the version ``spec`` names keeps its files (its ``source`` URI).

        Also for a version this store logged and has not committed yet.

        Raises
        ------
        ArtifactNotFoundError
            When ``spec`` names no version.
        """
        return self._resolve_including_own_pending(spec).source

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

    def _resolve_including_own_pending(self, spec: str) -> ArtifactVersion:
        project, name, ref = parse_spec(spec)
        project = project or self.project
        for version in self._pending:
            if (version.project, version.name) == (project, name) and ref == f"v{version.version}":
                return version
        return self.resolve(spec)

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
