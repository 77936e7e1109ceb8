"""One tracked step run: an MLflow run, a W&B run and an artifact store behind one small API.

Every step opens its run with :func:`start_run` (or :func:`open_run` / :meth:`Run.close` where
a context manager does not fit, as in the pytest-driven data check). Parameters, metrics,
summary values and figures go to MLflow and to W&B (online when logged in, offline otherwise,
not at all with ``WANDB_MODE=disabled``); artifacts go to the store that
:func:`util_lib.artifacts.backends.choose_backends` picks, used through its interface
(:class:`util_lib.artifacts.interface.ArtifactStore`) only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.artifacts.backends import choose_backends
from util_lib.artifacts.digests import code_digest, params_digest, running_step_folder
from util_lib.names import (
    CODE_DIGEST_TAG,
    CODE_DIR_TAG,
    CONFIG_DIGEST_TAG,
    FAILURE_TAG,
    PROJECT_TAG,
    STEP_TAG,
    STORE_TAG,
    USED_TAG,
    WRITTEN_TAG,
)
from util_lib.step.logs import describe, one_line, setup_logging
from util_lib.step.trackers import (
    delete_logged_model,
    experiment_from_env,
    flatten,
    peak_rss_mb,
    skip_databricks_probe,
    start_wandb,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from util_lib.artifacts.interface import ArtifactStore, ArtifactVersion, UsedArtifact

logger = logging.getLogger(__name__)


class Run:
    """A step's tracked run; create it with :func:`open_run` or :func:`start_run`."""

    def __init__(self, step: str, job_type: str, config: dict[str, Any] | None = None) -> None:
        self.step = step
        self.job_type = job_type
        self.log_file = setup_logging(step)
        self.backends = choose_backends()
        logger.info(
            "artifact store: %s (%s); W&B: %s",
            self.backends.artifact_store,
            self.backends.reason,
            self.backends.wandb_mode,
        )
        from util_lib.artifacts.backends import default_project

        # The W&B project, and the project of the embedded store's artifacts: one value.
        self.project = default_project()
        import mlflow

        skip_databricks_probe()
        self._mlflow = mlflow
        # Under `mlflow run`, MLFLOW_RUN_ID names the run MLflow created for this step:
        # start_run resumes it. Run directly, the step gets a run of its own.
        resuming = bool(os.environ.get("MLFLOW_RUN_ID"))
        self.mlflow_run = mlflow.start_run(
            run_name=None if resuming else step,
            experiment_id=None if resuming else experiment_from_env(),
        )
        self.run_id = self.mlflow_run.info.run_id
        self._params: dict[str, Any] = {}  # every parameter given, for the config digest
        step_dir = running_step_folder()
        mlflow.set_tags(
            {
                STEP_TAG: step,
                "util_lib.job_type": job_type,
                STORE_TAG: self.backends.artifact_store,
                PROJECT_TAG: self.project,
                CODE_DIGEST_TAG: code_digest([step_dir]),  # about 1 ms
                CODE_DIR_TAG: step_dir.name if step_dir else "",
                CONFIG_DIGEST_TAG: params_digest({}),
            }
        )
        self.wandb_run = start_wandb(
            step, job_type, self.project, self.backends.wandb_mode, config or {}, self.run_id
        )
        from util_lib.artifacts.backends import open_store

        self.store: ArtifactStore = open_store(
            self.backends.artifact_store, project=self.project, wandb_run=self.wandb_run
        )
        self.written: list[str] = []  # what log_artifact wrote, in order (its tag)
        self.used: list[str] = []  # what use_artifact resolved, in order (its tag)
        self._logged_models: list[str] = []  # ids of the MLflow logged models this run made
        self.closed = False
        if config:
            self.log_params(config)
        logger.info("%s started: MLflow run %s, log file %s", step, self.run_id, self.log_file)

    # ------------------------------------------------------------------ artifacts
    def use_artifact(self, spec: str, context: str | None = None) -> UsedArtifact:
        """Resolve ``[project/]name:version_or_alias``, make its files local (checked against
        their digests) and record the use.

        With no project, the run's own; the use is recorded as ``name:vN``, or
        ``project/name:vN`` for another project's version: in the store, in the run's tag,
        and as an MLflow dataset input of the run named so (:mod:`util_lib.step.datasets`), or for
        an exported model, its MLflow logged model as the run's model input.

        Parameters
        ----------
        spec : str
            ``[project/]name[:version_or_alias]``.
        context : str, optional
            What the run does with the data (MLflow's dataset context: ``training``,
            ``testing``, ...); default by the artifact's type (``raw``, ``preprocessed``).

        Returns
        -------
        util_lib.artifacts.interface.UsedArtifact
            The exact version resolved (``.version``), its local file or folder (``.path``)
            and the spec recorded (``.spec``); path-like, so ``pd.read_parquet`` takes it.

        Raises
        ------
        util_lib.artifacts.interface.ArtifactNotFoundError
            Naming what exists when the artifact, version or alias does not.
        """
        from util_lib.artifacts.interface import UsedArtifact
        from util_lib.step.datasets import read_context

        version = self.store.resolve(spec)
        path = self.store.download(version)
        self.store.record_use(version, self.run_id, self.step)
        used = version.spec if version.project == self.project else version.qualified_spec
        self.used.append(used)
        self._mlflow.set_tag(USED_TAG, ",".join(self.used))
        self._log_input(version, used, read_context(version, context))
        logger.info("using %s (from %s) at %s", used, spec, path)
        return UsedArtifact(version, path, used)

    def log_artifact(
        self,
        path: str | Path,
        name: str,
        type: str,
        description: str,
        metadata: dict[str, Any] | None = None,
        uploaded_to: str | None = None,
        context: str | None = None,
    ) -> str:
        """Log a file or folder as a new version of artifact ``name``; return ``name:vN``.

        The version becomes visible when the run ends successfully; a failed run removes it.
        ``uploaded_to``: where these files already are in MLflow (the embedded store then
        records that copy instead of uploading another; see :meth:`log_model`). A data
        version is also an MLflow dataset input of the run, in ``context`` (default
        ``output``).
        """
        from util_lib.step.datasets import OUTPUT_CONTEXT

        version = self.store.log(
            path, name, type, description, metadata, self.run_id, uploaded_to=uploaded_to
        )
        if version.spec not in self.written:
            self.written.append(version.spec)
        self._mlflow.set_tag(WRITTEN_TAG, ",".join(self.written))
        self._log_input(version, version.spec, context or OUTPUT_CONTEXT)
        return version.spec

    def _log_input(self, version: ArtifactVersion, name: str, context: str) -> None:
        """Record ``version`` as an input of the MLflow run: a dataset named ``name`` in
        ``context``, or an exported model's logged model (none for a model this run logs)."""
        from mlflow.entities import LoggedModelInput

        from util_lib.step.datasets import dataset_input, is_dataset

        client = self._mlflow.MlflowClient()
        if is_dataset(version):
            client.log_inputs(self.run_id, datasets=[dataset_input(version, name, context)])
            return
        model_id = version.metadata.get("model_id")
        if model_id and model_id not in self._logged_models:
            client.log_inputs(self.run_id, models=[LoggedModelInput(str(model_id))])

    def log_model(
        self,
        model_dir: str | Path,
        name: str,
        description: str,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Log an exported MLflow model folder once, as two things that share its files.

        It becomes an MLflow logged model of this run (named ``name``; the experiment's Models
        tab lists it, and metrics logged with its id attach to it), and a version of artifact
        ``name`` (type ``model_export``) whose source, in the embedded store, is the logged
        model's own copy, covered by the version's digests. The logged model's id goes into
        the folder's ``MLmodel`` first (as MLflow's ``log_model`` does) and into the version's
        metadata (``model_id``). A failed run deletes the logged model with the version.

        Returns
        -------
        (str, str)
            The artifact version (``model_export:v3``) and the logged model's id.
        """
        from mlflow.models import Model

        client = self._mlflow.MlflowClient()
        model = client.create_logged_model(
            self.mlflow_run.info.experiment_id,
            name=name,
            source_run_id=self.run_id,
            model_type="model_export",
            tags={STEP_TAG: self.step},
        )
        self._logged_models.append(model.model_id)
        mlmodel = Model.load(str(Path(model_dir) / "MLmodel"))
        mlmodel.model_id = model.model_id
        mlmodel.save(str(Path(model_dir) / "MLmodel"))
        client.log_model_artifacts(model.model_id, str(model_dir))
        model = client.finalize_logged_model(model.model_id, "READY")
        # The embedded store records this copy (as models:/<id>, which a tracking server accepts
        # as a version's source); W&B's keeps one of its own (it ignores it).
        shared = f"models:/{model.model_id}"
        spec = self.log_artifact(
            model_dir,
            name=name,
            type="model_export",
            description=description,
            metadata={**(metadata or {}), "model_id": model.model_id},
            uploaded_to=shared,
        )
        logger.info("model %s is logged model %s (one copy of its files)", spec, model.model_id)
        return spec, model.model_id

    def set_alias_if_unset(self, spec: str, alias: str) -> bool:
        """Point ``alias`` at ``spec`` when no version of that artifact has it; tell if it did."""
        done = self.store.set_alias_if_unset(spec, alias)
        logger.info("alias %r %s", alias, f"set on {spec}" if done else "already set, left alone")
        return done

    def resolve(self, spec: str) -> ArtifactVersion:
        """The version ``spec`` names, not downloaded."""
        return self.store.resolve(spec)

    def alias_unset(self, spec: str) -> bool:
        """Tell whether ``spec`` names an alias that no version of its artifact has yet."""
        return self.store.alias_unset(spec)

    def record_check(self, spec: str, passed: bool) -> ArtifactVersion:
        """Record on the version ``spec`` names that this run checked it, and the verdict.

        The version's ``check`` becomes ``passed`` or ``failed`` and its ``check_run_id`` this
        run's id, replacing an earlier check's. Returns the version.
        """
        from util_lib.names import CHECK_RUN_TAG, CHECK_TAG

        version = self.store.resolve(spec)
        verdict = "passed" if passed else "failed"
        self.store.set_version_tags(version, {CHECK_TAG: verdict, CHECK_RUN_TAG: self.run_id})
        logger.info("recorded on %s: data check %s (run %s)", spec, verdict, self.run_id)
        return version

    # ------------------------------------------------------------------ values and figures
    def log_params(self, params: dict[str, Any]) -> None:
        """Log (flattened) parameters; the ones `mlflow run` already logged are left alone."""
        self._params.update(flatten(params))
        self._mlflow.set_tag(CONFIG_DIGEST_TAG, params_digest(self._params))
        already = self._mlflow.get_run(self.run_id).data.params
        flat = {
            k: str(v)[:6000] for k, v in flatten(params).items() if k not in already and v != ""
        }
        if flat:
            self._mlflow.log_params(flat)
        if self.wandb_run is not None:
            self.wandb_run.config.update(flatten(params), allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics to MLflow and W&B."""
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
        if self.wandb_run is not None:
            self.wandb_run.log(dict(metrics), step=step)

    def log_summary(self, values: dict[str, Any], model_id: str | None = None) -> None:
        """Log the run's headline values: MLflow metrics (numbers) and the W&B summary.

        With ``model_id``, the metrics are also the scores of that MLflow logged model.
        """
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
        if numbers:
            self._mlflow.log_metrics(numbers, model_id=model_id)
        if self.wandb_run is not None:
            self.wandb_run.summary.update(values)

    def log_figure(self, figure: Figure, name: str) -> None:
        """Log a matplotlib figure as ``figures/<name>.png`` (MLflow) and an image (W&B)."""
        import tempfile

        import matplotlib.pyplot as plt

        # Rendered once for both trackers: a PNG of a 15-class confusion matrix takes 0.3 s.
        with tempfile.TemporaryDirectory(prefix="figure-") as tmp:
            png = Path(tmp) / f"{name}.png"
            figure.savefig(png)
            plt.close(figure)
            self._mlflow.log_artifact(str(png), "figures")
            if self.wandb_run is not None:
                import wandb

                self.wandb_run.log({name: wandb.Image(str(png))})

    # ------------------------------------------------------------------ ending
    def close(self, failed: bool = False, cause: str | None = None) -> None:
        """End the run: commit its artifact versions, or discard them when it failed.

        ``cause``: why it failed, recorded (one line, redacted) for the pipeline's last line.
        """
        if self.closed:
            return
        self.closed = True
        if not failed:
            try:
                committed = self.store.commit()
                if committed:
                    logger.info("%s wrote %s", self.step, ", ".join(committed))
            except Exception as error:
                logger.exception("%s: committing artifacts failed", self.step)
                failed, cause = True, f"committing artifacts failed: {describe(error)}"
        ran_on = self._what_ran() if not failed else {}
        if ran_on:
            # Before the run ends: the driver reads it as soon as the step's process is gone.
            self._mlflow.set_tags(ran_on)
        if failed:
            with suppress(Exception):  # the run still ends, failed, without its cause
                self._mlflow.set_tag(FAILURE_TAG, one_line(cause or "failed"))
            discarded = self.store.discard()
            for model_id in self._logged_models:
                try:
                    delete_logged_model(self._mlflow.MlflowClient(), model_id)
                    discarded.append(f"logged model {model_id}")
                except Exception:  # keep ending the run; the version is gone already
                    logger.exception("could not delete logged model %s", model_id)
            if discarded:
                logger.error("%s failed: discarded %s", self.step, ", ".join(discarded))
        # The step's peak memory, for the scale benchmark and for sizing machines.
        self._mlflow.log_metric("peak_rss_mb", peak_rss_mb())
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1 if failed else 0)
        self._mlflow.end_run(status="FAILED" if failed else "FINISHED")
        logger.info("%s %s", self.step, "FAILED" if failed else "finished")

    def _what_ran(self) -> dict[str, str]:
        """The tags that record the source files, Python and distributions this process ran
        on, for the step cache (util_lib/step/provenance.py); none when they cannot be had (the step
        cache then never reuses the run)."""
        from util_lib.names import PROJECT_ROOT
        from util_lib.step.provenance import record

        step_dir = running_step_folder()
        try:
            return record(step_dir.parent if step_dir else PROJECT_ROOT, step_dir)
        except Exception:
            logger.exception("%s: cannot record what it ran on; it will not be reused", self.step)
            return {}


def open_run(step: str, job_type: str, config: dict[str, Any] | None = None) -> Run:
    """Open a tracked run for ``step``; end it with :meth:`Run.close`."""
    return Run(step, job_type, config)


@contextmanager
def start_run(step: str, job_type: str, config: dict[str, Any] | None = None) -> Iterator[Run]:
    """Open a tracked run for ``step`` for the length of a ``with`` block.

    Leaving the block by an exception logs it (naming the step), marks the run failed and
    discards the artifact versions it created; the exception propagates.
    """
    run = open_run(step, job_type, config)
    try:
        yield run
    except BaseException as exc:
        logger.error("%s failed: %s", step, describe(exc))
        run.close(failed=True, cause=describe(exc))
        raise
    run.close(failed=False)
