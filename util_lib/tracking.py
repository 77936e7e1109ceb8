"""One tracked step run: an MLflow run, a W&B run and an artifact store behind one small API.

Every step opens its run with :func:`start_run` (or :func:`open_run` / :meth:`Run.close` where
a context manager does not fit, as in the pytest-driven data check). Parameters, metrics,
summary values and figures go to MLflow and to W&B (online when logged in, offline otherwise,
not at all with ``WANDB_MODE=disabled``); artifacts go to the store that
:func:`util_lib.backends.choose_backends` picks, used through its interface
(:class:`util_lib.artifact_store.ArtifactStore`) only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from util_lib.backends import choose_backends
from util_lib.digests import code_digest, params_digest, running_step_folder
from util_lib.environment import GROUP_ENV
from util_lib.logs import setup_logging
from util_lib.tags import (
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

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from util_lib.artifact_store import ArtifactStore, UsedArtifact
    from util_lib.store import ArtifactVersion

logger = logging.getLogger(__name__)

# W&B's console capture: "wrap" patches sys.stdout/sys.stderr's write (W&B's "auto" means the
# same today). "redirect" (file descriptors) costs about 2.4 s more a run here, and pytest,
# which runs the data check, swaps those descriptors under it.
WANDB_CONSOLE = "wrap"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dictionaries into ``{"a.b": value}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def get_or_create_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Return the id of MLflow experiment ``name``, creating it when it does not exist.

    A new experiment on a local SQLite store keeps its artifacts beside the database, in
    ``<store folder>/mlruns/<name>``: MLflow's default, ``./mlruns`` of the creating process,
    is wherever that process runs (the project folder, or a remote run's temporary clone).
    On a tracking server the server's artifact root applies.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    uri = client.tracking_uri
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///") :].split("?")[0]).resolve()
        location = str(database.parent / "mlruns" / name)
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent process
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _experiment_from_env() -> str | None:
    """The experiment id that ``MLFLOW_EXPERIMENT_NAME`` names, created if need be; else None.

    MLflow's own creation of that experiment at ``start_run`` fails in one of two processes
    that start together on a store without it (a unique-name error); this one tolerates that,
    and keeps the artifacts beside a local database like every experiment the project makes.
    ``MLFLOW_EXPERIMENT_ID`` wins over the name, as in MLflow.
    """
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return None
    return get_or_create_experiment(name)


def skip_databricks_probe() -> None:
    """Spare MLflow's probe for a Databricks notebook at each run start (unless set already).

    ``mlflow.start_run`` imports IPython to look for Databricks' ``dbutils``, for run
    resumption on Databricks serverless GPU jobs: 0.25 s per process here, paid by every step.
    Someone on Databricks who wants that resumption sets the variable to ``true``.
    """
    os.environ.setdefault("MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS", "false")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        from util_lib.store import default_project

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
            experiment_id=None if resuming else _experiment_from_env(),
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
        self.wandb_run = self._start_wandb(config or {})
        from util_lib.artifact_store import open_store

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
        and as an MLflow dataset input of the run named so (:mod:`util_lib.datasets`), or for
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
        util_lib.artifact_store.UsedArtifact
            The exact version resolved (``.version``), its local file or folder (``.path``)
            and the spec recorded (``.spec``); path-like, so ``pd.read_parquet`` takes it.

        Raises
        ------
        util_lib.store.ArtifactNotFoundError
            Naming what exists when the artifact, version or alias does not.
        """
        from util_lib.artifact_store import UsedArtifact
        from util_lib.datasets import read_context

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
        from util_lib.datasets import OUTPUT_CONTEXT

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

        from util_lib.datasets import dataset_input, is_dataset

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
        from util_lib.store import CHECK_RUN_TAG, CHECK_TAG

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
                    _delete_logged_model(self._mlflow.MlflowClient(), model_id)
                    discarded.append(f"logged model {model_id}")
                except Exception:  # keep ending the run; the version is gone already
                    logger.exception("could not delete logged model %s", model_id)
            if discarded:
                logger.error("%s failed: discarded %s", self.step, ", ".join(discarded))
        # The step's peak memory, for the scale benchmark and for sizing machines.
        self._mlflow.log_metric("peak_rss_mb", _peak_rss_mb())
        if self.wandb_run is not None:
            self.wandb_run.finish(exit_code=1 if failed else 0)
        self._mlflow.end_run(status="FAILED" if failed else "FINISHED")
        logger.info("%s %s", self.step, "FAILED" if failed else "finished")

    def _what_ran(self) -> dict[str, str]:
        """The tags that record the source files, Python and distributions this process ran
        on, for the step cache (util_lib/provenance.py); none when they cannot be had (the step
        cache then never reuses the run)."""
        from util_lib.arguments import PROJECT_ROOT
        from util_lib.provenance import record

        step_dir = running_step_folder()
        try:
            return record(step_dir.parent if step_dir else PROJECT_ROOT, step_dir)
        except Exception:
            logger.exception("%s: cannot record what it ran on; it will not be reused", self.step)
            return {}

    # ------------------------------------------------------------------ W&B
    def _start_wandb(self, config: dict[str, Any]) -> Any:
        if self.backends.wandb_mode == "disabled":
            return None
        import wandb

        run = wandb.init(
            project=self.project,
            group=os.environ.get(GROUP_ENV) or None,
            job_type=self.job_type,
            name=self.step,
            config=flatten(config),
            mode=self.backends.wandb_mode,
            # The step's console output (its log lines go to stderr) lands in the run's
            # files/output.log, as in the seed; silent keeps W&B's own banner off it.
            settings=wandb.Settings(silent=True, console=WANDB_CONSOLE),
        )
        # wandb.init puts its own sys.excepthook, which prints a traceback unredacted, in
        # front of ours: put the redacting one back.
        from util_lib.logs import install_redacting_excepthooks

        install_redacting_excepthooks()
        run.config.update({"mlflow_run_id": self.run_id}, allow_val_change=True)
        tags = {"wandb.mode": self.backends.wandb_mode, "wandb.run_id": run.id}
        if self.backends.wandb_mode == "online":
            tags["wandb.url"] = run.url or ""
        else:
            tags["wandb.dir"] = str(Path(run.dir).parent)
        self._mlflow.set_tags(tags)
        return run


def _delete_logged_model(client: Any, model_id: str) -> None:
    """Delete a logged model and its files: MLflow's delete only marks it deleted, and a
    failed export would leave its folder (12 MB for the forest) behind."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = client.get_logged_model(model_id).artifact_location
    client.delete_logged_model(model_id)
    get_artifact_repository(location).delete_artifacts()
    local = Path(location.removeprefix("file://"))
    if local.is_absolute() and local.name == "artifacts":
        # The model's own folder (models/<id>/) holds nothing else once its files are gone.
        with suppress(OSError):
            local.parent.rmdir()


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


def describe(error: BaseException) -> str:
    """What went wrong, as a person reads it: ``Type: message`` (the message alone for
    ``sys.exit("message")``; "interrupted" for Ctrl-C)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, SystemExit):
        return str(error.code) if isinstance(error.code, str) else f"exit status {error.code}"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line, secrets masked, at most ``limit`` characters."""
    from util_lib.redact import redact_text

    line = " ".join(redact_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
