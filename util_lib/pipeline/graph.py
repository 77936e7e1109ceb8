"""The pipeline's step graph, as ``pipeline.yaml`` declares it, and what each step is given.

``pipeline.yaml`` at the project root lists the steps in the order they run: each step's
MLflow project folder, the artifacts it reads and writes, its headline metrics, and the
source of every MLproject parameter (a constant, a config key, an upstream artifact, ...).
main.py runs the steps with one loop over :func:`load_graph`; :func:`step_parameters` turns a
step's declaration, the configuration and what earlier steps wrote into its parameters.
Reading it costs PyYAML only (no MLflow, no Hydra).

The default-input rule: an input that an earlier step of the same pipeline wrote is that exact
version (``name:vN``); any other reads ``name:current``, the version the last pipeline (or
step) run used or wrote (:data:`util_lib.artifacts.interface.CURRENT_ALIAS`: main.py moves the alias
after each step, and each version a step logs gets it), which is ``name:latest`` while no version
has it. The steps' MLproject defaults read ``name:current`` too, so a step run on its own reads what
the last pipeline reported, not a ``latest`` left by another run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from util_lib.artifacts.interface import CURRENT_ALIAS
from util_lib.names import PROJECT_ROOT
from util_lib.step.arguments import null_or, project_path

GRAPH_FILE = PROJECT_ROOT / "pipeline.yaml"
SOURCES = ("value", "config", "path", "input", "artifact", "section")


@dataclass(frozen=True)
class Parameter:
    """One MLproject parameter of a step and where its value comes from.

    ``source`` is one of :data:`SOURCES`; ``key`` is the constant (``value``), the config key
    (``config``, ``path``, ``artifact``, ``section``), or the artifact name (``input``;
    ``config_key`` set instead when config.yaml gives the name).
    """

    name: str
    source: str
    key: Any
    config_key: str | None = None


@dataclass(frozen=True)
class Step:
    """One step of the pipeline, as declared."""

    name: str
    folder: str
    parameters: tuple[Parameter, ...]
    outputs: tuple[Any, ...] = ()  # names, or {"config": KEY}
    metrics: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()  # heavy modules it imports, for the fork server to load

    def input_names(self, config: Any) -> list[str]:
        """The artifacts this step reads that earlier steps write (``input`` parameters)."""
        return [_input_name(p, config) for p in self.parameters if p.source == "input"]

    def output_names(self, config: Any) -> list[str]:
        """The artifacts this step writes (names resolved from the config where given so)."""
        names = []
        for output in self.outputs:
            name = _select(config, output["config"]) if isinstance(output, dict) else output
            if name is not None:
                names.append(str(name))
        return names


class GraphError(ValueError):
    """``pipeline.yaml`` declares something the pipeline cannot run; the message says what."""


@cache
def load_graph(path: Path = GRAPH_FILE) -> tuple[Step, ...]:
    """Read the declared steps, in pipeline order.

    Raises
    ------
    GraphError
        Naming the step and what is wrong (unknown source, duplicate step, no such folder).
    """
    document = yaml.safe_load(Path(path).read_text())
    steps = []
    for entry in document.get("steps") or []:
        name = entry.get("name")
        if not name:
            raise GraphError(f"{path}: a step without a name: {entry}")
        parameters = []
        for param, spec in (entry.get("parameters") or {}).items():
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SOURCES:
                raise GraphError(
                    f"{path}: step {name!r} parameter {param!r}: {spec!r} is not one of "
                    f"{{{', '.join(f'{s}: ...' for s in SOURCES)}}}"
                )
            source, key = next(iter(spec.items()))
            config_key = key["config"] if source == "input" and isinstance(key, dict) else None
            parameters.append(Parameter(param, source, key, config_key))
        steps.append(
            Step(
                name=name,
                folder=entry.get("folder", name),
                parameters=tuple(parameters),
                outputs=tuple(entry.get("outputs") or ()),
                metrics=tuple(entry.get("metrics") or ()),
                imports=tuple(entry.get("imports") or ()),
            )
        )
    names = [s.name for s in steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise GraphError(f"{path}: steps declared twice: {duplicates}")
    return tuple(steps)


def step_names(path: Path = GRAPH_FILE) -> tuple[str, ...]:
    """The steps' names, in pipeline order."""
    return tuple(step.name for step in load_graph(path))


def get_step(name: str, path: Path = GRAPH_FILE) -> Step:
    """The declared step ``name``.

    Raises
    ------
    GraphError
        When no step has that name, listing the steps.
    """
    for step in load_graph(path):
        if step.name == name:
            return step
    raise GraphError(f"unknown step {name!r}; steps: {list(step_names(path))}")


def writer_of_config_output(key: str, path: Path = GRAPH_FILE) -> Step | None:
    """The step declaring the output whose name config.yaml's ``key`` gives (e.g. the model's,
    ``random_forest_pipeline.export_artifact``), or None."""
    for step in load_graph(path):
        if {"config": key} in step.outputs:
            return step
    return None


def step_parameters(
    step: Step,
    config: Any,
    written: Mapping[str, str],
    write_section: Callable[[str], Path],
) -> dict[str, Any]:
    """The MLproject parameters of ``step``.

    Parameters
    ----------
    step : Step
        The declared step.
    config : omegaconf.DictConfig or dict
        The pipeline's configuration.
    written : mapping of str to str
        What earlier steps of this pipeline wrote: artifact name -> exact version
        (``raw_data.parquet`` -> ``raw_data.parquet:v3``); other inputs read
        ``name:current`` (the module's default-input rule).
    write_section : callable
        Writes config.yaml's section ``KEY`` (resolved) to a file and returns its path.

    Returns
    -------
    dict
        Parameter name -> value, in the declared order.
    """
    params: dict[str, Any] = {}
    for param in step.parameters:
        if param.source == "value":
            value: Any = param.key
        elif param.source == "config":
            raw = _select(config, param.key)
            value = str(raw).lower() if isinstance(raw, bool) else null_or(raw)
        elif param.source == "path":
            value = project_path(str(_select(config, param.key)))
        elif param.source == "input":
            name = _input_name(param, config)
            value = written.get(name, f"{name}:{CURRENT_ALIAS}")
        elif param.source == "artifact":
            value = str(_select(config, param.key))
        else:  # section
            value = str(write_section(param.key))
        params[param.name] = value
    return params


def _input_name(param: Parameter, config: Any) -> str:
    return str(_select(config, param.config_key)) if param.config_key else str(param.key)


def _select(config: Any, key: str) -> Any:
    """``config``'s value at the dotted ``key`` (an OmegaConf config or nested dicts)."""
    node = config
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError) as exc:
            raise GraphError(f"pipeline.yaml names config key {key!r}, which does not exist") from (
                exc
            )
    return node
