"""The reading side of the embedded artifact store (:mod:`util_lib.artifacts.mlflow_store`):
listing, resolving, downloading and checking versions kept in MLflow's Model Registry.

:class:`MlflowArtifactReader` is the base of
:class:`~util_lib.artifacts.mlflow_store.MlflowArtifactStore`, which adds the writing side
(log, commit, discard, aliases, notes); the module docstring of ``mlflow_store`` says how an
artifact is kept.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.artifacts.backends import default_project
from util_lib.artifacts.files import checked_download, describe_problems, verify_files, verify_spec
from util_lib.artifacts.interface import (
    CURRENT_ALIAS,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactVersion,
    check_project,
    is_alias,
    parse_spec,
    registry_name,
)
from util_lib.names import (
    CHECK_RUN_TAG,
    CHECK_TAG,
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

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

FILES_PREFIX = "util_lib_artifacts"

# The source of a version whose files are an MLflow logged model's: models:/<model id>.
LOGGED_MODEL_URI = "models:/"


def is_logged_model(source: str) -> bool:
    """Tell whether ``source`` names an MLflow logged model's files (``models:/m-...``)."""
    return source.startswith(LOGGED_MODEL_URI) and "/" not in source[len(LOGGED_MODEL_URI) :]


def is_local_uri(uri: str) -> bool:
    """Tell whether ``uri`` is a path on this machine (MLflow then uses the files in place)."""
    return uri.startswith("file:") or "://" not in uri and ":/" not in uri


class MlflowArtifactReader:
    """Versioned artifacts of one project on the MLflow tracking backend at ``tracking_uri``,
    read only (:class:`~util_lib.artifacts.mlflow_store.MlflowArtifactStore` also writes).

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI; default: MLflow's own (``MLFLOW_TRACKING_URI`` or ``./mlflow.db``).
    project : str, optional
        The project whose artifacts the store lists and resolves; default:
        :func:`~util_lib.artifacts.backends.default_project` (``$WANDB_PROJECT``, else
        config.yaml's ``main.project_name``). ``project/name:ref`` still reads another
        project's version.
    """

    kind = "mlflow"

    def __init__(self, tracking_uri: str | None = None, project: str | None = None) -> None:
        from mlflow import MlflowClient

        self.project = check_project(project) if project else default_project()
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = self.client.tracking_uri

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
        what = "alias" if is_alias(ref) else "version"
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
        return checked_download(version, root, fetch, temporary=not is_local_uri(uri))

    def files_uri(self, version: ArtifactVersion) -> str:
        """Where the files of ``version`` are: its source, or for a logged model's files
        (``models:/<id>``) that model's artifact location (read directly: MLflow's models:/
        reader writes its own bookkeeping file into a local model)."""
        if is_logged_model(version.source):
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
            if is_local_uri(uri):
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

    # ----------------------------------------------------------------- helpers
    def _set_tag(self, version: ArtifactVersion, key: str, value: str) -> None:
        self.client.set_model_version_tag(
            version.registry_name, version.registry_version, key, value
        )

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
