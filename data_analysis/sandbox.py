"""Set-up shared by the notebooks: the project on the path, its settings, its tracking.

The notebooks run in ``data_analysis/`` (Jupyter starts a kernel in the notebook's folder), so
their first cell puts the project root (the first folder above holding ``config.yaml``) on
``sys.path`` and calls :func:`setup_sandbox`; from then on they import the pipeline's own code
(``util_lib``, ``preprocess``, ``train_random_forest``), never a copy of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from util_lib.step.run import Run

CONFIG_FILE = "config.yaml"
CODE_FOLDER = "code"


def setup_sandbox(root: Path) -> DictConfig:
    """Load ``config.yaml`` and point tracking where the pipeline's runs are.

    Only environment variables are set, and only those the environment does not set already
    (``mlflow run``, a shell or a test may have): the notebooks then use what the pipeline uses
    when launched from the project root, the store ``<root>/mlflow.db``, the log file and W&B
    folder there, and from ``config.yaml`` the MLflow experiment and W&B project
    (``main.project_name``), the W&B group and the artifact store. The project root also goes
    on ``PYTHONPATH``, so that worker processes (joblib) import the pipeline's code too.

    Parameters
    ----------
    root : pathlib.Path
        The project root (the folder of ``config.yaml``).

    Returns
    -------
    omegaconf.DictConfig
        ``config.yaml``, unresolved (resolve a section with ``OmegaConf.to_container(...,
        resolve=True)``; the ``hydra`` section only resolves inside a Hydra app), with the
        model that its ``defaults`` choose (a file of ``conf/model/``) under ``model`` and the
        data contract (a file of ``conf/dataset/``) under ``dataset``, as Hydra composes them;
        :func:`model_settings` gives what ``build_pipeline`` takes.
    """
    from train_random_forest.model_config import chosen_model_file
    from util_lib.names import ARTIFACT_STORE_ENV, GROUP_ENV, LOG_FILE_ENV, PROJECT_ENV
    from util_lib.step.contract import chosen_contract_file

    root = Path(root).resolve()
    config = OmegaConf.load(root / CONFIG_FILE)
    config.model = OmegaConf.load(chosen_model_file(config, root / CONFIG_FILE))
    config.dataset = OmegaConf.load(chosen_contract_file(root / CONFIG_FILE))
    defaults = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        LOG_FILE_ENV: str(root / config.main.log_file),
        "WANDB_DIR": str(root),
        PROJECT_ENV: config.main.project_name,
        GROUP_ENV: config.main.experiment_name,
        ARTIFACT_STORE_ENV: config.main.artifact_store,
    }
    if not os.environ.get("MLFLOW_EXPERIMENT_ID"):
        # The pipeline's experiment (MLflow creates it at the first run if need be).
        defaults["MLFLOW_EXPERIMENT_NAME"] = config.main.project_name
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    paths = [str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return config


def log_notebook(run: Run, notebook: Path) -> str:
    """Save the notebook (as last saved on disk) with the run: its code.

    The file goes to the MLflow run's artifacts under ``code/`` and, unless W&B is disabled,
    into the W&B run's files (uploaded with the run, or by ``wandb sync`` when offline); its
    sha256 becomes the tag ``util_lib.notebook_sha256``.

    Parameters
    ----------
    run : util_lib.step.run.Run
        The notebook's open run.
    notebook : pathlib.Path
        The ``.ipynb`` file.

    Returns
    -------
    str
        The file's sha256.

    Raises
    ------
    FileNotFoundError
        When ``notebook`` does not exist.
    """
    import mlflow

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook to log not found: {notebook}")
    digest = hashlib.sha256(notebook.read_bytes()).hexdigest()
    mlflow.log_artifact(str(notebook), CODE_FOLDER)
    mlflow.set_tags({"util_lib.notebook": notebook.name, "util_lib.notebook_sha256": digest})
    wandb_run: Any = run.wandb_run
    if wandb_run is not None:
        # A copy inside the run folder: wandb.save of an outside file only links it, and the
        # link would follow later edits of the notebook.
        copy = Path(wandb_run.dir) / CODE_FOLDER / notebook.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(notebook, copy)
        wandb_run.save(str(copy), base_path=wandb_run.dir, policy="now")
    return digest


def show_and_log(run: Run, figure: Figure, name: str) -> None:
    """Show a figure in the notebook, then log it with the run as ``figures/<name>.png``.

    Showing comes first: :meth:`util_lib.step.run.Run.log_figure` closes the figure.
    """
    from IPython.display import display

    display(figure)
    run.log_figure(figure, name)


def model_settings(config: DictConfig) -> dict[str, Any]:
    """What :func:`train_random_forest.pipeline.build_pipeline` takes, from
    :func:`setup_sandbox`'s configuration: the ``random_forest_pipeline`` section with the model
    under ``model`` and the data contract's features under ``features``, resolved (as the train
    step reads them)."""
    from util_lib.step.contract import contract_from_mapping

    settings = OmegaConf.to_container(config.random_forest_pipeline, resolve=True)
    settings.pop("random_forest", None)  # the schema's moved key, if a config still has it
    settings["model"] = OmegaConf.to_container(config.model, resolve=True)
    dataset = OmegaConf.to_container(config.dataset, resolve=True)
    settings["features"] = contract_from_mapping(dataset, "conf/dataset/").features()
    return settings


def config_updates(best_params: dict[str, Any], model_config: dict[str, Any]) -> dict[str, Any]:
    """Turn a grid search's best pipeline parameters into the configuration keys they change.

    Parameters
    ----------
    best_params : dict
        ``GridSearchCV.best_params_`` of a pipeline from
        :func:`train_random_forest.pipeline.build_pipeline`: ``classifier__<model argument>``
        or ``processor__<nlp transformer>__tfidfvectorizer__max_features``.
    model_config : dict
        What the pipeline was built from (:func:`model_settings`).

    Returns
    -------
    dict
        ``{"model.max_depth": 20, "random_forest_pipeline.tfidf.max_features": 30}`` (Hydra
        keys: the model's arguments are in its file of ``conf/model/``), only the values that
        differ from ``model_config`` (empty: the configuration already holds the best ones).

    Raises
    ------
    KeyError
        For a parameter that no ``config.yaml`` key sets; the message names it.
    """
    updates: dict[str, Any] = {}
    for param, value in best_params.items():
        if param.startswith("classifier__"):
            section, key = "model", param.removeprefix("classifier__")
        elif param.startswith("processor__") and param.endswith("__tfidfvectorizer__max_features"):
            section, key = "random_forest_pipeline.tfidf", "max_features"
        else:
            raise KeyError(f"pipeline parameter {param!r} has no key in the configuration")
        if model_config.get(section.split(".")[-1], {}).get(key) != value:
            updates[f"{section}.{key}"] = value
    return updates


def hydra_overrides(updates: dict[str, Any]) -> str:
    """Write :func:`config_updates` as Hydra overrides for ``-P hydra_options="..."``."""

    def literal(value: Any) -> str:
        return (
            "null"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )

    return " ".join(f"{key}={literal(value)}" for key, value in updates.items())
