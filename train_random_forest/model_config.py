"""The model's settings as the step reads them: config.yaml's ``random_forest_pipeline``
section and the config group ``model`` (a file of ``conf/model/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from util_lib.step.arguments import project_path
from util_lib.step.contract import default_contract, read_contract

# The section of config.yaml that configures the pipeline around the model.
MODEL_SECTION = "random_forest_pipeline"
# The config group of the model and where its files are (under the project root).
MODEL_GROUP = "model"
GROUP_FOLDER = Path("conf") / MODEL_GROUP
# random_forest_pipeline.random_forest, the model's arguments before the config group.
MOVED_KEY = "random_forest"
# random_forest_pipeline.features, the feature lists before the data contract (its roles).
MOVED_FEATURES = "features"
# The name of the text feature that the model joins the text columns into.
TEXT_FEATURE = "text_feature"


def read_model_config(
    path: str, model: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    """Read the model's settings, as plain Python values.

    Parameters
    ----------
    path : str
        A YAML file of the ``random_forest_pipeline`` section (as main.py writes it) or a whole
        config.yaml, whose section is then taken with its interpolations resolved. A relative
        path is under the project root.
    model : str, optional
        A YAML file of the model: ``_target_`` and its keyword arguments, as main.py writes the
        ``model`` section, or a file of ``conf/model/``, whose interpolations
        (``${main.random_seed}``) are resolved against config.yaml. None: the file that the
        ``defaults`` of the config.yaml at ``path`` (else the project's) choose.
    dataset : str, optional
        The data contract (a file of ``conf/dataset/`` or the section main.py writes), whose
        columns' roles are the features. None: the file that the project's config.yaml
        chooses.

    Returns
    -------
    dict
        The section, with the model under ``"model"``, the contract's feature lists under
        ``"features"`` (``numerical``, ``categorical``, ``nlp``: its text columns) and the name of
        its text feature under ``"text_feature"``.

    Raises
    ------
    ValueError
        When a file does not hold a mapping, config.yaml chooses no model, or the section
        still holds the model's arguments (``random_forest``, moved), naming the file.
    """
    from omegaconf import DictConfig, OmegaConf

    def load(file: Path) -> DictConfig:
        config = OmegaConf.load(file)
        if not isinstance(config, DictConfig):
            raise ValueError(f"model config {file} does not hold a YAML mapping")
        return config

    file = Path(project_path(path))
    config = load(file)
    whole = MODEL_SECTION in config
    root = config if whole else load(Path(project_path("config.yaml")))
    model_file = Path(project_path(model)) if model else chosen_model_file(root, file)
    root[MODEL_GROUP] = load(model_file)
    settings = OmegaConf.to_container(config[MODEL_SECTION] if whole else config, resolve=True)
    # A section that still holds a moved key (an old file) is refused, naming the new one.
    if moved := settings.pop(MOVED_KEY, None):
        raise ValueError(
            f"{file}: {MODEL_SECTION}.{MOVED_KEY}={moved} moved: the model is the config group "
            f"{MODEL_GROUP!r} ({GROUP_FOLDER}/); set {MODEL_GROUP}.<argument> instead"
        )
    if features := settings.pop(MOVED_FEATURES, None):
        raise ValueError(
            f"{file}: {MODEL_SECTION}.{MOVED_FEATURES}={features} moved: the features are the "
            "data contract's (conf/dataset/<name>.yaml, chosen with dataset=NAME); set "
            "dataset.columns.<column>.role=numerical|categorical|text instead"
        )
    settings[MODEL_GROUP] = OmegaConf.to_container(root[MODEL_GROUP], resolve=True)
    contract = read_contract(dataset) if dataset else default_contract()
    settings[MOVED_FEATURES] = contract.features()
    settings[TEXT_FEATURE] = contract.text_feature
    return settings


def chosen_model_file(root: Any, file: Path | str = "config.yaml") -> Path:
    """The file of conf/model/ that a config.yaml's ``defaults`` choose (``- model: NAME``).

    Parameters
    ----------
    root : omegaconf.DictConfig
        The config.yaml, as loaded (not composed).
    file : pathlib.Path or str
        Where it was read from, for the message.

    Raises
    ------
    ValueError
        When its defaults choose no model.
    """
    from omegaconf import OmegaConf

    for entry in root.get("defaults") or []:
        if OmegaConf.is_dict(entry) and entry.get(MODEL_GROUP):
            return Path(project_path(str(GROUP_FOLDER / f"{entry[MODEL_GROUP]}.yaml")))
    raise ValueError(f"{file}: its defaults choose no {MODEL_GROUP} (- {MODEL_GROUP}: NAME)")
