"""The exported model in the MLflow Model Registry, linked to the artifact version it came from.

Each training run registers its export as a new version of a registered model (default name:
the project's, ``main.registered_model_name``), so that ``models:/<name>@prod`` serves it. The
registry version is made from the training run's MLflow logged model, whose files are also the
artifact version's (one copy, covered by the artifact's sha256 digests; MLflow's own
``registered_model_meta``, which ``mlflow models serve`` writes into a local model it uses in
place, is not counted among them). ``python -m serving serve`` checks every file against those
digests before it serves. A registry version carries tags:

- ``util_lib.artifact``: the artifact version it serves, e.g. ``model_export:v3``;
- ``util_lib.artifact_project``: the project of that artifact (``main.project_name``): two
  projects each have a ``model_export:v3``, and a promotion in one never moves the other's;
- ``util_lib.artifact_store``: ``mlflow`` (the embedded store) or ``wandb`` (the store's
  ``kind``);
- ``util_lib.artifact_source``: where that version lives (the store's ``source_of``: the
  embedded store's URI of the files, W&B's ``entity/project/name:vN``);
- the training values (``val_auc``, ``train_data``) and, once evaluated, ``test_auc``,
  ``test_accuracy``, ``test_data`` and ``util_lib.evaluate_run``.

:func:`promote` moves an alias (``prod``) on both the artifact version and the registry
versions that serve it; ``python -m util_lib.artifacts alias model_export:vN prod`` calls it,
and :func:`promote_command` writes that command. Only the store's interface
(:class:`util_lib.artifacts.interface.ArtifactStore`) is used: nothing here depends on which store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from util_lib.artifacts.backends import default_project, open_store
from util_lib.artifacts.interface import ArtifactStore, check_alias, check_project, parse_spec
from util_lib.names import KIND_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

logger = logging.getLogger(__name__)

ARTIFACT_TAG = "util_lib.artifact"
ARTIFACT_PROJECT_TAG = "util_lib.artifact_project"
ARTIFACT_STORE_TAG = "util_lib.artifact_store"
ARTIFACT_SOURCE_TAG = "util_lib.artifact_source"
EVALUATE_RUN_TAG = "util_lib.evaluate_run"
REGISTERED_TAG = "util_lib.registered_model"  # on the training run: name/version


class Run(Protocol):
    """What the registry reads of a step's tracked run (:class:`util_lib.step.run.Run`, which
    this layer does not import): its MLflow run and its artifact store."""

    run_id: str
    store: ArtifactStore


@dataclass(frozen=True)
class Promotion:
    """What :func:`promote` moved: the artifact version and the registry versions."""

    alias: str
    artifact: str
    registry_versions: list[tuple[str, str]]

    def lines(self) -> list[str]:
        """One line per alias set, e.g. ``prod -> models:/music_genre_classification/4``."""
        return [f"{self.alias} -> {self.artifact}"] + [
            f"{self.alias} -> models:/{name}/{version} (serve models:/{name}@{self.alias})"
            for name, version in self.registry_versions
        ]


def _client(tracking_uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create the registered model ``name`` unless it exists.

    Raises
    ------
    ValueError
        When ``name`` is an artifact of the embedded store (a registered model it manages).
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Classifier exported by the pipeline's train step"
            )
        except MlflowException as exc:  # created meanwhile by a concurrent run
            if "already exists" not in str(exc).lower():
                raise
        return
    if model.tags.get(KIND_TAG) == "artifact":
        raise ValueError(
            f"registered model name {name!r} is taken by an artifact of the embedded store; "
            "set main.registered_model_name to another name"
        )


def versions_of_artifact(
    client: MlflowClient,
    spec: str,
    artifact_store: str,
    name: str | None = None,
    project: str | None = None,
) -> list[ModelVersion]:
    """Registry versions that serve artifact version ``spec`` of ``artifact_store``.

    Parameters
    ----------
    client : mlflow.MlflowClient
        Client of the registry.
    spec : str
        The exact artifact version, ``[project/]name:vN``, e.g. ``model_export:v3``.
    artifact_store : {"mlflow", "wandb"}
        The store that holds ``spec`` (both number their versions from v0).
    name : str, optional
        Only versions of this registered model.
    project : str, optional
        The artifact's project when ``spec`` names none; default:
        :func:`util_lib.artifacts.backends.default_project`.

    Returns
    -------
    list of ModelVersion
        Oldest first; usually one.
    """
    spec_project, artifact, ref = parse_spec(spec)
    project = check_project(spec_project or project or default_project())
    query = f"tags.`{ARTIFACT_TAG}` = '{artifact}:{ref}'"
    if name:
        query += f" and name = '{name}'"
    found = client.search_model_versions(query, max_results=10000)
    found = [
        mv
        for mv in found
        if (mv.tags or {}).get(ARTIFACT_STORE_TAG) == artifact_store
        and (mv.tags or {}).get(ARTIFACT_PROJECT_TAG) == project
    ]
    return sorted(found, key=lambda mv: (mv.name, int(mv.version)))


def register_export(
    run: Run, spec: str, model_id: str, name: str, tags: dict[str, Any] | None = None
) -> ModelVersion:
    """Register the model that ``run`` just logged as ``spec`` and MLflow logged model
    ``model_id`` (:meth:`util_lib.step.run.Run.log_model`).

    The registry version is made from the logged model (source ``models:/<model_id>``), so the
    logged model, the artifact version and the registry version share one copy of the files,
    the one the artifact's digests cover (``python -m serving serve`` checks them before it
    serves). A version that already serves ``spec`` under ``name`` is returned as is. Call it
    right after ``run.log_model``, as the run's last act.

    Parameters
    ----------
    run : util_lib.step.run.Run
        The training run that logged ``spec``.
    spec : str
        What ``run.log_model`` returned, e.g. ``model_export:v3``.
    model_id : str
        The logged model's id, also from ``run.log_model``.
    name : str
        The registered model.
    tags : dict, optional
        More version tags (values become strings), e.g. ``{"val_auc": 0.95}``.

    Returns
    -------
    ModelVersion
        The registry version.

    Raises
    ------
    ValueError
        When ``name`` belongs to the artifact store.
    util_lib.artifacts.interface.ArtifactNotFoundError
        When ``spec`` is not in the run's store.
    """
    client = _client()
    store = run.store
    ensure_registered_model(client, name)
    existing = versions_of_artifact(client, spec, store.kind, name, store.project)
    if existing:
        logger.info("%s is already version %s of model %s", spec, existing[0].version, name)
        return existing[0]
    version_tags = {
        ARTIFACT_TAG: spec,
        ARTIFACT_PROJECT_TAG: store.project,
        ARTIFACT_STORE_TAG: store.kind,
        ARTIFACT_SOURCE_TAG: store.source_of(spec),  # the run's own version, pending still
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    mv = client.create_model_version(
        name,
        f"models:/{model_id}",
        run_id=run.run_id,
        tags=version_tags,
        description=f"artifact {spec}",
        model_id=model_id,
    )
    client.set_tag(run.run_id, REGISTERED_TAG, f"{name}/{mv.version}")
    logger.info("registered %s as version %s of model %s", spec, mv.version, name)
    return mv


def record_evaluation(run: Run, spec: str, values: dict[str, Any]) -> list[ModelVersion]:
    """Tag the registry versions that serve ``spec`` with ``values`` (e.g. ``test_auc``).

    ``spec`` is ``name:vN`` of the run's project or ``project/name:vN``. Returns the versions
    tagged; none when the model was not registered (logged, not an error).
    """
    client = _client()
    versions = versions_of_artifact(client, spec, run.store.kind, project=run.store.project)
    for mv in versions:
        for key, value in {**values, EVALUATE_RUN_TAG: run.run_id}.items():
            client.set_model_version_tag(mv.name, mv.version, key, str(value))
        logger.info("recorded %s on version %s of model %s", sorted(values), mv.version, mv.name)
    if not versions:
        logger.info("%s is in no registered model: the scores are on the run only", spec)
    return versions


def promote(
    spec: str,
    alias: str,
    artifact_store: str = "mlflow",
    tracking_uri: str | None = None,
    project: str | None = None,
) -> Promotion:
    """Point ``alias`` at artifact version ``spec`` and at the registry versions serving it.

    Only that project's artifact version and the registry versions serving it move.

    Parameters
    ----------
    spec : str
        ``[project/]name:vN`` (or ``name:alias``) of the artifact, e.g. ``model_export:v3``.
    alias : str
        E.g. ``prod``; ``latest`` and ``vN`` are reserved.
    artifact_store : {"mlflow", "wandb"}
        Where the artifact lives: the embedded store on ``tracking_uri``, or W&B (online);
        :func:`util_lib.artifacts.backends.open_store` opens it.
    tracking_uri : str, optional
        The MLflow tracking (and registry) URI; default MLflow's own.
    project : str, optional
        The artifact's project when ``spec`` names none; default:
        :func:`util_lib.artifacts.backends.default_project`.

    Returns
    -------
    Promotion
        The artifact version and the registry versions the alias now points at.

    Raises
    ------
    util_lib.artifacts.interface.ArtifactNotFoundError
        When ``spec`` names no version; nothing is changed.
    ValueError
        When ``alias`` is reserved; nothing is changed.
    """
    client = _client(tracking_uri)
    spec_project, _, _ = parse_spec(spec)
    explicit = project is not None
    project = check_project(spec_project or project or default_project())
    check_alias(alias)  # a reserved alias moves nothing
    store = open_store(artifact_store, project=project, tracking_uri=tracking_uri)
    version = store.resolve(spec)
    registered = versions_of_artifact(client, version.spec, store.kind, project=version.project)
    store.set_alias(version.qualified_spec, alias)
    for mv in registered:
        client.set_registered_model_alias(mv.name, alias, mv.version)
        logger.info("alias %r now points at version %s of model %s", alias, mv.version, mv.name)
    # Named with its project when the caller named one.
    shown = version.qualified_spec if spec_project or explicit else version.spec
    return Promotion(alias, shown, [(mv.name, str(mv.version)) for mv in registered])


def promote_command(
    spec: str, alias: str, artifact_store: str, tracking_uri: str, default_uri: str
) -> str:
    """The command that runs :func:`promote` for ``spec`` in the store of kind
    ``artifact_store``, whatever store the reader's own set-up would pick.

    The MLflow tracking URI (which holds the registry, and the embedded store) is spelled out
    unless it is ``default_uri`` (the one the command finds by itself), its password hidden:
    the reader supplies their own.
    """
    command = f"python -m util_lib.artifacts alias {spec} {alias} --store {artifact_store}"
    if tracking_uri != default_uri:
        from util_lib.redact import redact_url

        command = f"MLFLOW_TRACKING_URI={redact_url(tracking_uri)} {command}"
    return command
