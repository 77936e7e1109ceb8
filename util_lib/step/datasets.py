"""The data artifacts a run reads and writes, as MLflow datasets of that run.

:meth:`util_lib.step.run.Run.use_artifact` and :meth:`~util_lib.step.run.Run.log_artifact`
record each data version they handle with MLflow's own ``log_inputs``, so the MLflow UI's
runs table (its *Dataset* column) and each run's page show what the run used: the dataset's
name is the version (``data_train:v2``, ``project/name:vN`` for another project's), its digest
the store's sha256 digest (shortened, as ``python -m util_lib.artifacts list`` prints it: MLflow
keeps 36 characters at most; the whole digest is the input's ``util_lib.digest`` tag), its
source the store's location of the files, and its context (MLflow's ``mlflow.data.context``
tag) what the run did with it: ``training``, ``testing``, ``raw``, ... or ``output``.

Nothing is read again and nothing is loaded: the dataset is a
:class:`mlflow.data.meta_dataset.MetaDataset` made of what the store recorded (this module
imports MLflow: :class:`~util_lib.step.run.Run` imports it when it first needs it). An exported
model (type ``model_export``) is not a dataset: its MLflow logged model is the run's input
instead.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import register_dataset_source

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput

    from util_lib.artifacts.interface import ArtifactVersion

# The context of a version read, by its artifact type, when the step names none.
READ_CONTEXTS = {"raw_data": "raw", "preprocessed_data": "preprocessed"}
# Artifacts that are not data: the MLflow logged model stands for an exported model.
NOT_DATASETS = frozenset({"model_export"})
OUTPUT_CONTEXT = "output"  # a version the run wrote
SHORT_DIGEST = 12  # as `python -m util_lib.artifacts list` and `lineage` print digests
DIGEST_TAG = "util_lib.digest"  # the whole digest, on the run's input
TYPE_TAG = "util_lib.type"  # the artifact's type, on the run's input
SOURCE_TYPE = "util_lib_artifact_store"


def is_dataset(version: ArtifactVersion) -> bool:
    """Whether ``version`` is data (logged as an MLflow dataset) rather than a model."""
    return version.type not in NOT_DATASETS


def read_context(version: ArtifactVersion, context: str | None = None) -> str:
    """What a run does with a version it reads: ``context``, else its type's default
    (:data:`READ_CONTEXTS`), else the type itself."""
    return context or READ_CONTEXTS.get(version.type) or version.type or "input"


def dataset_input(version: ArtifactVersion, name: str, context: str) -> DatasetInput:
    """The MLflow dataset input of ``version``, named ``name`` (``data_train:v2``).

    Parameters
    ----------
    version : ArtifactVersion
        The version, as the store resolved or logged it (its digest, type and ``source``).
    name : str
        The dataset's name: the spec the run records.
    context : str
        MLflow's ``mlflow.data.context`` tag (``training``, ``output``, ...).
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    fields = MetaDataset(
        source=dataset_source(version.source),
        name=name,
        # Given, so MetaDataset computes none (its own digest hashes the name and source).
        digest=version.digest[:SHORT_DIGEST] or "unknown",
    ).to_dict()
    tags = {MLFLOW_DATASET_CONTEXT: context, DIGEST_TAG: version.digest, TYPE_TAG: version.type}
    return DatasetInput(
        dataset=Dataset(
            name=fields["name"],
            digest=fields["digest"],
            source_type=fields["source_type"],
            source=fields["source"],
        ),
        tags=[InputTag(key, value) for key, value in tags.items() if value],
    )


def dataset_source(location: str) -> DatasetSource:
    """The MLflow dataset source of a store location.

    A local path or a URL that MLflow has a source type for (``file:``, ``s3:``, ``gs:``,
    ``http(s):``) gets that type, which the UI shows (*Path*, *S3 URI*, a link); any other
    location (a tracking server's ``mlflow-artifacts:/``, a W&B artifact's name) is an
    :class:`ArtifactStoreSource`.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.exceptions import MlflowException

    # MLflow would take a W&B name (entity/project/name:v0) for a relative local path.
    if Path(location).is_absolute() or "://" in location:
        try:
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": all local
                warnings.simplefilter("ignore", UserWarning)
                return resolve_dataset_source(location)
        except MlflowException:  # no source type for this scheme
            pass
    return ArtifactStoreSource(location)


class ArtifactStoreSource(DatasetSource):
    """The location of a version's files where MLflow has no source type of its own.

    Registered with MLflow's dataset sources when this module is imported, so that
    ``mlflow.data.get_source`` reads it back in a process that imported it.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return SOURCE_TYPE

    def load(self, dst_path: str | None = None) -> str:
        """Download the files (for an MLflow location; a W&B one needs W&B's API)."""
        from mlflow.artifacts import download_artifacts

        return download_artifacts(artifact_uri=self.uri, dst_path=dst_path)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False  # made explicitly by dataset_source, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: Any) -> ArtifactStoreSource:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> ArtifactStoreSource:
        return cls(str(source_dict["uri"]))

    def __repr__(self) -> str:
        return f"ArtifactStoreSource({json.dumps(self.uri)})"


register_dataset_source(ArtifactStoreSource)


def log_pipeline_inputs(client: MlflowClient, run_id: str, step_run_ids: list[str]) -> int:
    """Record on the pipeline run ``run_id`` the datasets of its steps and the models they
    logged, so that its page (the link the pipeline prints) shows them too: MLflow's run page
    shows a run's own inputs and models only, not its children's.

    Each dataset is recorded once (MLflow keeps one input per dataset and run), in the
    context of its first reader (``raw``, ``validation``, ``training``, ...), ``output`` when
    no step read it. The models the steps logged become the pipeline run's model outputs.

    Returns
    -------
    int
        How many datasets and models were recorded.
    """
    from mlflow.entities import LoggedModelOutput

    chosen: dict[tuple[str, str], DatasetInput] = {}
    models: list[str] = []
    for step_run_id in step_run_ids:
        step_run = client.get_run(step_run_id)
        for found in step_run.inputs.dataset_inputs if step_run.inputs else []:
            key = (found.dataset.name, found.dataset.digest)
            if key not in chosen or (
                _context(chosen[key]) == OUTPUT_CONTEXT and _context(found) != OUTPUT_CONTEXT
            ):
                chosen[key] = found
        made = client.search_logged_models(
            [step_run.info.experiment_id], filter_string=f"source_run_id = '{step_run_id}'"
        )
        models += [m.model_id for m in made]
    if chosen:
        client.log_inputs(run_id, datasets=list(chosen.values()))
    if models:
        client.log_outputs(run_id, [LoggedModelOutput(m, step=0) for m in models])
    return len(chosen) + len(models)


def _context(found: DatasetInput) -> str | None:
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return {t.key: t.value for t in found.tags}.get(MLFLOW_DATASET_CONTEXT)
