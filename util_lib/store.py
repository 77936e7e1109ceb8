"""The embedded artifact store, kept on MLflow's tracking backend.

It gives W&B's artifact semantics to anyone with no W&B account, wherever
``MLFLOW_TRACKING_URI`` points (the local SQLite file by default, a team's server otherwise):

- an artifact is a registered model of MLflow's Model Registry tagged ``util_lib.kind=artifact``;
  each of its versions is a registry version (``vN`` is registry version N+1, since W&B counts
  from 0), so the backend's own transaction hands out version numbers and two processes
  logging the same name at once get two distinct versions;
- the files are uploaded to the producing run's artifacts, under
  ``util_lib_artifacts/<name>/<digest>/``, and the version's ``source`` points there;
- the version's tags hold its type, metadata, per-file sha256 digests, state and the runs that
  used it; ``run_id`` is the run that produced it; aliases are registry aliases, and ``latest``
  is always the newest committed version;
- a version is created ``pending`` and becomes visible only when its run commits, so a step
  that fails (or is killed) leaves no new version; ``discard`` deletes the pending versions;
- content identical to a committed version (same digest) makes no new version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
USED_BY_PREFIX = "util_lib.used_by."
FILES_PREFIX = "util_lib_artifacts"

_SPEC = re.compile(r"^(?:(?P<project>[^/:]+)/)?(?P<name>[^/:]+)(?::(?P<ref>[^/:]+))?$")
_VERSION = re.compile(r"^v(\d+)$")
_CHUNK = 1 << 20


class ArtifactNotFoundError(LookupError):
    """An artifact, version or alias that the store does not hold."""


@dataclass
class ArtifactVersion:
    """One committed (or pending) version of an artifact."""

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

    @property
    def spec(self) -> str:
        """The qualified name, ``name:vN``."""
        return f"{self.name}:v{self.version}"

    @property
    def registry_version(self) -> str:
        """The registry version number behind ``vN``."""
        return str(self.version + 1)


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


def file_digests(path: Path) -> dict[str, str]:
    """Return ``{relative path: sha256}`` for a file or every file below a folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot log artifact: {path} does not exist")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    base = path.parent if path.is_file() else path
    digests = {}
    for file in files:
        sha = hashlib.sha256()
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                sha.update(chunk)
        digests[file.relative_to(base).as_posix()] = sha.hexdigest()
    return digests


def manifest_digest(files: dict[str, str]) -> str:
    """Digest of a whole artifact: sha256 over its sorted ``path:sha256`` lines."""
    lines = "".join(f"{name}:{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _check_alias(alias: str) -> None:
    if alias == "latest" or _VERSION.match(alias):
        raise ValueError(f"alias {alias!r} is reserved: 'latest' and 'vN' are set by the store")


class MlflowArtifactStore:
    """Versioned artifacts on the MLflow tracking backend at ``tracking_uri``.

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI; default: MLflow's own (``MLFLOW_TRACKING_URI`` or ``./mlflow.db``).
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        from mlflow import MlflowClient

        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        self._pending: list[ArtifactVersion] = []

    # ----------------------------------------------------------------- reading
    def names(self) -> list[str]:
        """Names of the artifacts in the store, sorted."""
        models = self.client.search_registered_models(max_results=1000)
        names = [m.name for m in models if m.tags.get(KIND_TAG) == "artifact"]
        token = getattr(models, "token", None)
        while token:
            models = self.client.search_registered_models(max_results=1000, page_token=token)
            names += [m.name for m in models if m.tags.get(KIND_TAG) == "artifact"]
            token = getattr(models, "token", None)
        return sorted(names)

    def versions(self, name: str, include_pending: bool = False) -> list[ArtifactVersion]:
        """Versions of ``name``, oldest first (committed ones only, unless asked)."""
        found = self.client.search_model_versions(f"name='{name}'", max_results=10000)
        versions = [self._to_version(mv) for mv in found]
        # Search results carry no aliases; the registered model maps each alias to a version.
        aliases = self._registered(name).aliases if versions else {}
        for version in versions:
            version.aliases = [a for a, v in aliases.items() if str(v) == version.registry_version]
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

        Raises
        ------
        ArtifactNotFoundError
            With the artifacts, versions and aliases that do exist.
        """
        _, name, ref = parse_spec(spec)
        versions = self.versions(name) if self._registered(name) else []
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise ArtifactNotFoundError(
                f"artifact {name!r} not found in the store at {self.tracking_uri} "
                f"(artifacts there: {known})"
            )
        for version in versions:
            if ref in version.aliases or ref == f"v{version.version}":
                return version
        listing = ", ".join(
            f"v{v.version}" + (f" [{', '.join(v.aliases)}]" if v.aliases else "") for v in versions
        )
        what = "version" if _VERSION.match(ref) else "alias"
        raise ArtifactNotFoundError(
            f"{what} {ref!r} of artifact {name!r} not found in the store at {self.tracking_uri} "
            f"(versions: {listing})"
        )

    def download(self, version: ArtifactVersion, root: str | Path | None = None) -> Path:
        """Make the files of ``version`` local and return the file (one-file artifact) or folder.

        With no ``root``, a store on the local disk hands back its own copy (read-only by
        convention) and a remote one is downloaded to a temporary folder; with ``root``, the
        files are copied there. Every copy is checked against the recorded sha256 digests.
        """
        import mlflow.artifacts

        if root is None:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source))
        else:
            root = Path(root)
            root.mkdir(parents=True, exist_ok=True)
            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=root)
            )
            if local != root:  # the source folder's own name: move its content up into root
                for item in local.iterdir():
                    target = root / item.name
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    shutil.move(str(item), target)
                local.rmdir()
                local = root
        self._verify(version, local)
        if len(version.files) == 1:
            return local / next(iter(version.files))
        return local

    # ----------------------------------------------------------------- writing
    def log(
        self,
        path: str | Path,
        name: str,
        type: str,
        description: str,
        metadata: dict[str, Any] | None,
        run_id: str,
    ) -> ArtifactVersion:
        """Add ``path`` (a file or folder) as a pending version of ``name`` produced by ``run_id``.

        Content identical to a committed version of ``name`` (or to one this store logged
        already) returns that version and creates nothing.
        """
        parse_spec(name)  # rejects names with '/' or ':'
        files = file_digests(Path(path))
        digest = manifest_digest(files)
        self._ensure_registered(name, type)
        for existing in self._pending + self.versions(name):
            if existing.name == name and existing.digest == digest:
                logger.info("%s: content identical to %s, no new version", name, existing.spec)
                return existing
        artifact_path = f"{FILES_PREFIX}/{name}/{digest[:16]}"
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
            name, source=source, run_id=run_id, tags=tags, description=description
        )
        version = self._to_version(mv)
        self._pending.append(version)
        logger.info("%s: staged %s (%d files, sha256 %s)", name, version.spec, len(files), digest)
        return version

    def commit(self) -> list[str]:
        """Make the pending versions of this store visible; return their specs."""
        committed = []
        for version in self._pending:
            self.client.set_model_version_tag(
                version.name, version.registry_version, STATE_TAG, "committed"
            )
            version.state = "committed"
            committed.append(version.spec)
        self._pending = []
        return committed

    def discard(self) -> list[str]:
        """Delete the pending versions of this store (after a failure); return their specs."""
        discarded = []
        for version in self._pending:
            try:
                self.client.delete_model_version(version.name, version.registry_version)
                discarded.append(version.spec)
            except Exception:  # keep discarding the others; a pending version stays invisible
                logger.exception("could not delete pending version %s", version.spec)
        self._pending = []
        return discarded

    def record_use(self, version: ArtifactVersion, run_id: str, step: str) -> None:
        """Note on ``version`` that ``run_id`` (a run of ``step``) used it."""
        self.client.set_model_version_tag(
            version.name, version.registry_version, USED_BY_PREFIX + run_id, step
        )

    def set_alias(self, spec: str, alias: str) -> ArtifactVersion:
        """Point ``alias`` at the version ``spec`` names (moving it from any other version)."""
        _check_alias(alias)
        version = self._resolve_including_own_pending(spec)
        self.client.set_registered_model_alias(version.name, alias, version.registry_version)
        logger.info("alias %r now points at %s", alias, version.spec)
        return version

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Point ``alias`` at ``spec`` only when no version of that artifact has it yet."""
        _check_alias(alias)
        _, name, _ = parse_spec(spec)
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version_by_alias(name, alias)
            return False
        except MlflowException:
            self.set_alias(spec, alias)
            return True

    # ----------------------------------------------------------------- helpers
    def _resolve_including_own_pending(self, spec: str) -> ArtifactVersion:
        _, name, ref = parse_spec(spec)
        for version in self._pending:
            if version.name == name and ref == f"v{version.version}":
                return version
        return self.resolve(spec)

    def _registered(self, name: str) -> Any:
        """The registered model of artifact ``name``, or None when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return None
        return model if model.tags.get(KIND_TAG) == "artifact" else None

    def _ensure_registered(self, name: str, type: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    name, tags={KIND_TAG: "artifact", TYPE_TAG: type}
                )
            except MlflowException as exc:  # created meanwhile by a concurrent writer
                if "already exists" not in str(exc).lower():
                    raise
            return
        if model.tags.get(KIND_TAG) != "artifact":
            raise ValueError(
                f"{name!r} is a registered model that the artifact store does not manage; "
                "choose another artifact name"
            )

    def _verify(self, version: ArtifactVersion, local: Path) -> None:
        found = file_digests(local)
        if len(version.files) == 1 and local.is_dir():
            found = {k: v for k, v in found.items() if k in version.files}
        if found != version.files:
            raise OSError(
                f"{version.spec}: the files at {local} do not match their recorded sha256 digests"
            )

    @staticmethod
    def _to_version(mv: ModelVersion) -> ArtifactVersion:
        tags = mv.tags or {}
        return ArtifactVersion(
            name=mv.name,
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
        )
